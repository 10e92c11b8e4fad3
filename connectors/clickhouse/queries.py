"""Named analytic queries: `sql/queries/<name>.sql` with typed ClickHouse parameters.

Values only ever travel as server-side parameters (`{name:Type}` in the SQL,
bound by ClickHouse), never formatted into the text; names of queries and
tables are never taken from the caller, who picks a query by name from a
fixed registry. Each value is checked against its declared type here too, so
a bad value is a clear usage error rather than a ClickHouse exception.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.resources.abc import Traversable
from typing import Any

from clickhouse_connect.driver.client import Client

from connectors.clickhouse.sql_files import sql_files, sql_root

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*):([^{}]+)\}")
DEFAULTS: dict[str, Any] = {"pool": "", "entitlement": "", "window_s": 60}
MAX_STRING = 256


class QueryError(ValueError):
    """An unknown query, or a parameter that is missing, unknown or of the wrong type."""


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str

    def coerce(self, value: Any) -> Any:
        """The value as ClickHouse should receive it for this parameter's type."""
        base = self.type.strip()
        try:
            if base.startswith("DateTime"):
                return format_time(parse_time(value))
            if base.startswith(("UInt", "Int")):
                number = int(value)
                if base.startswith("UInt") and number < 0:
                    raise ValueError("must not be negative")
                if self.name.endswith("_s") and number < 1:
                    raise ValueError("must be at least 1")
                return number
            if base.startswith("Float"):
                real = float(value)
                if not math.isfinite(real):
                    raise ValueError("must be finite")
                return real
            if base == "String":
                text = str(value)
                if len(text) > MAX_STRING:
                    raise ValueError(f"longer than {MAX_STRING} characters")
                return text
        except (TypeError, ValueError, OverflowError, OSError) as exc:  # OSError: huge times
            raise QueryError(f"{self.name}: {exc} (expected {self.type})") from None
        raise QueryError(f"{self.name}: unsupported parameter type {self.type}")


@dataclass(frozen=True)
class NamedQuery:
    name: str
    description: str
    sql: str
    parameters: tuple[Parameter, ...]

    def declared_values(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The entries of `values` this query declares: one set of values serves a whole report."""
        declared = {p.name for p in self.parameters}
        return {k: v for k, v in values.items() if k in declared}

    def bind(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Check and convert the caller's values; missing optional ones take `DEFAULTS`."""
        declared = {p.name: p for p in self.parameters}
        unknown = sorted(set(values) - set(declared))
        if unknown:
            raise QueryError(f"{self.name}: unknown parameter(s) {', '.join(unknown)}")
        bound = {}
        for name, parameter in declared.items():
            value = values.get(name)
            if value is None:
                if name not in DEFAULTS:
                    raise QueryError(f"{self.name}: parameter {name} is required")
                value = DEFAULTS[name]
            bound[name] = parameter.coerce(value)
        return bound


@dataclass(frozen=True)
class QueryResult:
    """Rows of one named query; `types` are ClickHouse type names, for decoding and plots."""

    name: str
    columns: list[str]
    types: list[str]
    rows: list[list[Any]]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "columns": self.columns, "types": self.types, "rows": self.rows}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> QueryResult:
        types = list(data["types"])
        times = [i for i, t in enumerate(types) if t.startswith("DateTime")]
        rows = [list(row) for row in data["rows"]]
        for row in rows:
            for i in times:
                if isinstance(row[i], str):
                    row[i] = datetime.fromisoformat(row[i])
        return cls(data["name"], list(data["columns"]), types, rows)


def is_numeric(type_name: str) -> bool:
    """Whether a result column of this ClickHouse type holds numbers (for alignment, plots)."""
    return type_name.removeprefix("Nullable(").startswith(("Int", "UInt", "Float", "Decimal"))


_INCLUDE = re.compile(r"^[ \t]*-- include: ([a-z0-9_]+)[ \t]*$", re.MULTILINE)


def _with_fragments(sql: str, source: str) -> str:
    """`-- include: NAME` lines replaced by `sql/fragments/NAME.sql`, indented as the line.

    ClickHouse SQL has no include; the rollup-served queries share their range and
    check-before-use this way instead of each repeating it.
    """

    def fragment(match: re.Match[str]) -> str:
        path = sql_root() / "fragments" / f"{match.group(1)}.sql"
        if not path.is_file():
            raise QueryError(f"{source}: no fragment {match.group(1)!r} in sql/fragments")
        indent = match.group(0)[: len(match.group(0)) - len(match.group(0).lstrip())]
        return "\n".join(indent + line if line else line for line in path.read_text().splitlines())

    return _INCLUDE.sub(fragment, sql)


def load_queries(directory: Traversable | None = None) -> dict[str, NamedQuery]:
    """Every `*.sql` in `directory` (default `sql/queries`); the leading `--` lines describe it.

    `-- include: NAME` lines take `sql/fragments/NAME.sql` (`_with_fragments`).
    """
    directory = sql_root() / "queries" if directory is None else directory
    queries = {}
    for path in sql_files(directory):
        sql = _with_fragments(path.read_text(), path.name)
        stem = path.name.removesuffix(".sql")
        description = " ".join(line.removeprefix("--").strip() for line in _leading_comments(sql))
        parameters: dict[str, Parameter] = {}
        for name, type_ in _PLACEHOLDER.findall(sql):
            previous = parameters.setdefault(name, Parameter(name, type_.strip()))
            if previous.type != type_.strip():
                raise QueryError(f"{path.name}: parameter {name} declared as two types")
        queries[stem] = NamedQuery(stem, description, sql, tuple(parameters.values()))
    return queries


def _leading_comments(sql: str) -> list[str]:
    lines = []
    for line in sql.splitlines():
        if not line.startswith("--"):
            break
        lines.append(line)
    return lines


def run_query(client: Client, query: NamedQuery, values: Mapping[str, Any]) -> QueryResult:
    """Bind `values` as server-side parameters and run `query`."""
    result = client.query(query.sql, parameters=query.bind(values))
    types = [t.name for t in result.column_types]
    columns = [_plain(c, t) for c, t in zip(result.result_columns, types, strict=True)]
    rows = [list(row) for row in zip(*columns, strict=True)]
    return QueryResult(query.name, list(result.column_names), types, rows)


def _plain(column: Sequence[Any], type_name: str) -> Sequence[Any]:
    """The column with UTC-aware datetimes and JSON-safe floats (NaN → None).

    Decided by the column's type, a column at a time: a per-window query returns tens of
    thousands of rows, and a Python check of every value cost more than the query itself
    (docs/PERFORMANCE.md). Datetimes repeat (one per window), so each distinct one is
    converted once; a float column is checked whole, in C, before any value is touched.
    """
    base = type_name.removeprefix("Nullable(")
    if base.startswith("DateTime"):
        aware = {v: _aware(v) for v in set(column)}
        return [aware[v] for v in column]
    if base.startswith("Float") and not all(map(math.isfinite, filter(None, column))):
        return [v if v is None or math.isfinite(v) else None for v in column]
    return column


def _aware(value: Any) -> Any:
    return (
        value.replace(tzinfo=UTC) if isinstance(value, datetime) and value.tzinfo is None else value
    )


def parse_time(value: Any) -> datetime:
    """A point in time from a datetime, unix seconds, or ISO 8601 text (UTC unless it says)."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, int | float):
        moment = datetime.fromtimestamp(float(value), UTC)
    else:
        text = str(value).strip()
        try:
            moment = datetime.fromtimestamp(float(text), UTC)
        except ValueError:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def format_time(moment: datetime) -> str:
    """How a DateTime64(3, 'UTC') parameter is written: UTC, millisecond precision."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
