"""The layering rules of DESIGN §2, checked on the source rather than trusted."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IO_LIBRARIES = {"aiokafka", "faust", "mode", "aiohttp", "clickhouse_connect", "chdb", "kubernetes",
                "httpx", "uvicorn", "starlette"}


def _imports(package: str) -> set[tuple[Path, str]]:
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update((path, alias.name.split(".")[0]) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add((path, node.module.split(".")[0]))
    return found


def test_streams_and_connectors_never_import_each_other() -> None:
    assert not {p for p, m in _imports("streams") if m == "connectors"}
    assert not {p for p, m in _imports("connectors") if m == "streams"}


def test_the_core_never_imports_io_libraries() -> None:
    cli = ROOT / "tokenpools" / "cli"
    offenders = {
        (str(p.relative_to(ROOT)), m)
        for p, m in _imports("tokenpools")
        if m in IO_LIBRARIES | {"connectors", "streams"} and cli not in p.parents
    }
    assert not offenders


def test_importing_every_core_module_loads_no_io_library() -> None:
    modules = [
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in (ROOT / "tokenpools").rglob("*.py")
        if "cli" not in p.relative_to(ROOT).parts
    ]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(sorted(set({sorted(IO_LIBRARIES)!r}) & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
