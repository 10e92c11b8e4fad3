"""Apply `sql/migrations/*.sql` (`sql_files.py`) in order, once each, and remember what was applied.

A migration is a file `NNNN_name.sql` of one or more statements separated by
`;` at the end of a line. Applied files are recorded in `schema_migrations`
with a checksum; a file that changed after it was applied is refused rather
than silently diverging from the live schema. Statements are written to be
re-runnable (IF NOT EXISTS), so a run interrupted half-way is simply run again.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources.abc import Traversable

from clickhouse_connect.driver.client import Client

from connectors.clickhouse.sql_files import sql_files, sql_root

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_STATEMENT_END = re.compile(r";[ \t]*(?:\n|$)")

_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations
(
    version    String,
    name       String,
    checksum   String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(applied_at)
ORDER BY version
"""


class MigrationError(RuntimeError):
    """A migration failed, or an applied one was edited afterwards."""


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def statements(self) -> list[str]:
        return split_statements(self.sql)


def split_statements(sql: str) -> list[str]:
    """Statements separated by `;` at a line end, comments kept (ClickHouse ignores them)."""
    return [p.strip() for p in _STATEMENT_END.split(sql) if _has_code(p)]


def _has_code(text: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in text.splitlines())


def migrations_dir() -> Traversable:
    """The folder of migration files (`sql_files.sql_root`, read when called)."""
    return sql_root() / "migrations"


def load_migrations(directory: Traversable | None = None) -> list[Migration]:
    """Migration files in version order; a stray file name is an error, not a skip."""
    directory = migrations_dir() if directory is None else directory
    found = []
    for path in sql_files(directory):
        match = _FILE.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_snake_name.sql")
        found.append(Migration(match.group(1), match.group(2), path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration versions in {directory}")
    return found


def applied(client: Client) -> dict[str, str]:
    """`{version: checksum}` of what this database already has."""
    client.command(_LEDGER)
    result = client.query(
        "SELECT version, argMax(checksum, applied_at) FROM schema_migrations GROUP BY version"
    )
    return {str(version): str(checksum) for version, checksum in result.result_rows}


def migrate(
    client: Client,
    migrations: list[Migration] | None = None,
    on_applied: Callable[[Migration], None] | None = None,
) -> list[Migration]:
    """Apply what is missing, in order; returns the migrations applied by this call."""
    migrations = load_migrations() if migrations is None else migrations
    done = applied(client)
    for migration in migrations:
        previous = done.get(migration.version)
        if previous is not None and previous != migration.checksum:
            raise MigrationError(
                f"{migration.version}_{migration.name}.sql changed after it was applied; "
                "add a new migration instead of editing an applied one"
            )
    newly = []
    for migration in migrations:
        if migration.version in done:
            continue
        for statement in migration.statements():
            try:
                client.command(statement)
            except Exception as exc:
                raise MigrationError(
                    f"{migration.version}_{migration.name}.sql failed: {exc}"
                ) from exc
        client.insert(
            "schema_migrations",
            [[migration.version, migration.name, migration.checksum]],
            column_names=["version", "name", "checksum"],
        )
        newly.append(migration)
        if on_applied is not None:
            on_applied(migration)
    return newly
