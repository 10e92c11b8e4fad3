"""Where the SQL files are read from: the package's own copy, or `$TOKENPOOLS_SQL_DIR`.

`sql/` at the top of the checkout (where it is edited) ships as the package data
`connectors.clickhouse.sql` (a link to it), read with `importlib.resources`, so
a checkout, an editable install and a wheel all find it. The environment is
read on each call, not at import: a command sees the environment it started in.
"""

from __future__ import annotations

import os
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

SQL_DIR_ENV = "TOKENPOOLS_SQL_DIR"
PACKAGE = "connectors.clickhouse.sql"


def sql_root() -> Traversable:
    """`$TOKENPOOLS_SQL_DIR` when set (an operator's edited copy), else the packaged SQL."""
    override = os.environ.get(SQL_DIR_ENV)
    return Path(override) if override else files(PACKAGE)


def sql_files(directory: Traversable) -> list[Traversable]:
    """The `*.sql` files directly in `directory`, by name."""
    found = (f for f in directory.iterdir() if f.is_file() and f.name.endswith(".sql"))
    return sorted(found, key=lambda f: f.name)
