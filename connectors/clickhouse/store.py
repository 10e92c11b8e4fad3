"""Where the analytics live: an embedded chDB store on disk, or a ClickHouse server by URL.

chDB allows one store path per process, and a store on disk is held by one
process at a time. The sink process therefore owns an embedded store and
answers queries for the others (`endpoint.py`); with a server every process
simply connects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import clickhouse_connect
from clickhouse_connect.driver.binding import quote_identifier
from clickhouse_connect.driver.client import Client

DEFAULT_DATABASE = "tokenpools"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


class StoreError(RuntimeError):
    """The store cannot be opened (held by another process, server unreachable, bad target)."""


@dataclass(frozen=True)
class Target:
    """One ClickHouse: `dsn` is `chdb:///abs/path` (embedded) or an `http(s)://` server URL."""

    dsn: str
    database: str = DEFAULT_DATABASE

    def __post_init__(self) -> None:
        if not _IDENTIFIER.match(self.database):
            raise ValueError(f"database: {self.database!r} is not a plain ClickHouse identifier")
        scheme = urlparse(self.dsn).scheme
        if scheme not in ("chdb", "http", "https", "clickhouse", "clickhouses"):
            raise ValueError(f"dsn: expected chdb:///path or http(s)://host:port, got {self.dsn!r}")

    @classmethod
    def embedded(cls, path: str | Path, database: str = DEFAULT_DATABASE) -> Target:
        """An embedded chDB store in directory `path` (created on first use)."""
        return cls(f"chdb://{Path(path).expanduser().resolve()}", database)

    @classmethod
    def from_options(
        cls, store: Path | None, url: str | None, database: str = DEFAULT_DATABASE
    ) -> Target:
        """The target the CLI flags name: `--url` (server) wins over `--store` (embedded)."""
        if url:
            return cls(url, database)
        if store is None:
            raise ValueError("--store PATH or --url URL is required")
        return cls.embedded(store, database)

    @property
    def is_embedded(self) -> bool:
        return self.dsn.startswith("chdb:")

    @property
    def store_path(self) -> Path | None:
        """The embedded store's directory; None for a server."""
        return Path(urlparse(self.dsn).path) if self.is_embedded else None

    def describe(self) -> str:
        """For messages: the store path or the server without credentials."""
        if self.is_embedded:
            return f"{self.store_path} (embedded chDB), database {self.database}"
        parsed = urlparse(self.dsn)
        return f"{parsed.scheme}://{parsed.hostname}:{parsed.port or ''}, database {self.database}"


def connect(target: Target, create_database: bool = True) -> Client:
    """A client on `target` using its database (created first when asked, else it must exist)."""
    store = target.store_path
    if store is not None:
        if create_database:
            store.mkdir(parents=True, exist_ok=True)
        elif not store.is_dir():
            raise StoreError(f"no store at {store}: start the sink or run db migrate")
    try:
        client = clickhouse_connect.get_client(dsn=target.dsn)
    except Exception as exc:  # the drivers raise several unrelated types for "cannot open"
        raise StoreError(f"cannot open {target.describe()}: {exc}") from exc
    try:
        if create_database:
            client.command(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(target.database)}")
        elif not client.query(
            "SELECT count() FROM system.databases WHERE name = {db:String}",
            parameters={"db": target.database},
        ).result_rows[0][0]:
            raise StoreError(f"{target.describe()}: no such database; run `tokenpools db migrate`")
        client.database = target.database
    except StoreError:
        client.close()
        raise
    except Exception as exc:
        client.close()
        raise StoreError(f"cannot use database on {target.describe()}: {exc}") from exc
    return client
