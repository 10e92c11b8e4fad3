"""Which optional extra a command needs, and a clear exit when it is not installed.

The base install is the core and this CLI shell; each role's libraries come
with an extra of pyproject.toml (`pip install 'tokenpools[sidecar]'`). Commands
import their role's modules only when they run, so every `--help` works on any
install; before those imports a command calls `require` with its extras.
"""

from __future__ import annotations

import importlib.util
import sys
from enum import StrEnum

import typer


class Extra(StrEnum):
    """The optional extras of the distribution (`[project.optional-dependencies]`)."""

    KAFKA = "kafka"
    SIDECAR = "sidecar"
    WORKER = "worker"
    ANALYTICS = "analytics"
    KUBERNETES = "kubernetes"
    PLOTS = "plots"


# The modules each extra provides that its commands import (uvloop is used only if present).
MODULES: dict[Extra, tuple[str, ...]] = {
    Extra.KAFKA: ("aiokafka",),
    Extra.SIDECAR: ("aiokafka", "aiohttp", "httptools", "prometheus_client"),
    Extra.WORKER: ("aiokafka", "faust", "prometheus_client"),
    Extra.ANALYTICS: (
        "aiokafka",
        "aiohttp",
        "chdb",
        "clickhouse_connect",
        "confluent_kafka",
        "httpx",
        "prometheus_client",
    ),
    Extra.KUBERNETES: ("aiokafka", "aiohttp", "kubernetes"),
    Extra.PLOTS: ("matplotlib",),
}

MISSING_EXTRA_EXIT = 2


def importable(name: str) -> bool:
    """Whether module `name` can be imported, found without importing it.

    One already imported counts as such: faust swaps its module for a lazy one
    without `__spec__`, on which `find_spec` raises.
    """
    if name in sys.modules:
        return sys.modules[name] is not None
    return importlib.util.find_spec(name) is not None


def missing_modules(extra: Extra) -> list[str]:
    """The modules of `extra` that cannot be imported here."""
    return [name for name in MODULES[extra] if not importable(name)]


def require(*extras: Extra) -> None:
    """Exit with a message naming the extra to install when one of `extras` is incomplete."""
    for extra in extras:
        missing = missing_modules(extra)
        if missing:
            typer.echo(
                f"this command needs the '{extra}' extra (missing: {', '.join(missing)}); "
                f"install it with: pip install 'tokenpools[{extra}]'",
                err=True,
            )
            raise typer.Exit(MISSING_EXTRA_EXIT)
