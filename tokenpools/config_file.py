"""Read a platform config from YAML and turn every problem into `path: message`."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from tokenpools.schemas.config import PlatformConfig


class ConfigError(ValueError):
    """A config that cannot be used; `problems` holds one `field.path: message` per fault."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


def load_config(path: str | Path) -> PlatformConfig:
    """Parse and validate a YAML config file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.strerror or exc}"]) from None
    return parse_config(text, source=str(path))


def parse_config(text: str, source: str = "<config>") -> PlatformConfig:
    """Parse and validate YAML text."""
    try:
        data = yaml.safe_load(text)
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
