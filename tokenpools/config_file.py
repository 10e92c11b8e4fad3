"""Read a platform config from YAML and turn every problem into `path: message`.

Whatever the file holds (binary bytes, 5,000 levels of nesting, a key given
twice), the answer is a `ConfigError` naming where, never a traceback: the
YAML is read by a loader that refuses duplicate keys and nesting deeper than
`MAX_DEPTH`, and the models take numbers strictly (`tokenpools.schemas.bounds`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node

from tokenpools.schemas.config import PlatformConfig


class ConfigError(ValueError):
    """A config that cannot be used; `problems` holds one `field.path: message` per fault."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


MAX_DEPTH = 64
"""Nesting a config can have (it needs 4); deeper is an accident or an attack on the parser."""


class _StrictLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses a key given twice and nesting deeper than `MAX_DEPTH`."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise ConstructorError(
                    None,
                    None,
                    f"nested deeper than {MAX_DEPTH} levels",
                    self.peek_event().start_mark,  # type: ignore[no-untyped-call]  # stubs lack it
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: SafeLoader's own error says so below
                break
            if duplicate:
                raise ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_config(path: str | Path) -> PlatformConfig:
    """Parse and validate a YAML config file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.strerror or exc}"]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            str(path),
            [f"<file>: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"],
        ) from None
    return parse_config(text, source=str(path))


def parse_config(text: str, source: str = "<config>") -> PlatformConfig:
    """Parse and validate YAML text."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", exc)
        raise ConfigError(source, [f"{where}invalid YAML ({problem})"]) from None
    if not isinstance(data, dict):
        raise ConfigError(source, ["<root>: expected a mapping with 'pools' and 'entitlements'"])
    try:
        return PlatformConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, format_validation_error(exc)) from None


def format_validation_error(exc: ValidationError) -> list[str]:
    """pydantic's errors as `entitlements[2].burst.tps: message` lines."""
    problems: list[str] = []
    for err in exc.errors():
        path = _path(err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        if not path:
            # Cross-object rules already start each message with its path.
            problems.extend(part.strip() for part in message.split("; "))
        else:
            problems.append(f"{path}: {message}")
    return problems


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out
