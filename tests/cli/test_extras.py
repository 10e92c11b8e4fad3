"""Every command shows --help without the role libraries; a command that needs one names its extra.

Runs the CLI in a fresh interpreter where the libraries of every extra are made
unimportable (a `None` entry in `sys.modules`), as on a base install.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from tokenpools_cli.extras import MISSING_EXTRA_EXIT, MODULES, Extra, missing_modules

BLOCKED = sorted({name for names in MODULES.values() for name in names} | {"uvloop"})
CHECKOUT = Path(__file__).resolve().parents[2]

_HARNESS = """
import json, sys
sys.modules.update(dict.fromkeys(json.loads(sys.argv[1])))
import click, typer.main
from typer.testing import CliRunner
from tokenpools_cli.main import app
runs = json.loads(sys.argv[2])
if runs is None:  # every command path's --help
    def paths(command, prefix):
        yield prefix
        for name, sub in getattr(command, "commands", {}).items():
            yield from paths(sub, [*prefix, name])
    runs = [[*p, "--help"] for p in paths(typer.main.get_command(app), [])]
out = []
for argv in runs:
    result = CliRunner().invoke(app, argv)
    out.append([argv, result.exit_code, result.output, repr(result.exception)])
print(json.dumps(out))
"""


def _run_cli_blocked(runs: list[list[str]] | None) -> list[tuple[list[str], int, str, str]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(CHECKOUT), *sys.path])}
    proc = subprocess.run(
        [sys.executable, "-c", _HARNESS, json.dumps(BLOCKED), json.dumps(runs)],
        capture_output=True,
        text=True,
        env=env,
        cwd=CHECKOUT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return [tuple(r) for r in json.loads(proc.stdout.splitlines()[-1])]


def test_every_command_shows_help_without_any_extra() -> None:
    results = _run_cli_blocked(None)
    assert len(results) > 20
    for argv, code, output, exception in results:
        assert code == 0, (argv, output, exception)
        assert "Usage:" in output, argv


CASES = [
    (["db", "migrate", "--store", "{tmp}/ch"], Extra.ANALYTICS),
    (["sink", "run", "--store", "{tmp}/ch"], Extra.ANALYTICS),
    (["report", "--store", "{tmp}/ch"], Extra.ANALYTICS),
    (["sidecar", "run", "--backend", "http://127.0.0.1:9"], Extra.SIDECAR),
    (["scraper", "run", "--target", "p=http://127.0.0.1:9"], Extra.SIDECAR),
    (["engine-sim", "run"], Extra.SIDECAR),
    (["worker", "run"], Extra.WORKER),
    (["actuator", "run", "--target", "p=deployment/ns/name"], Extra.KUBERNETES),
    (["actuator", "run", "--target", "p=deployment/ns/name", "--dry-run"], Extra.KAFKA),
    (["topics", "create"], Extra.KAFKA),
    (["config", "apply", "deploy/examples/overload.yaml"], Extra.KAFKA),
    (["demo", "events"], Extra.KAFKA),
    (["demo", "loop"], Extra.KAFKA),
    (
        ["simulate", "run", "-c", "deploy/examples/overload.yaml", "--plot", "{tmp}/p.png"],
        Extra.PLOTS,
    ),
]


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("extras")


@pytest.fixture(scope="module")
def blocked_results(store_dir: Path) -> list[tuple[list[str], int, str, str]]:
    """All CASES in one interpreter (starting one per case costs seconds each)."""
    return _run_cli_blocked(
        [[a.replace("{tmp}", str(store_dir)) for a in argv] for argv, _ in CASES]
    )


@pytest.mark.parametrize("case", range(len(CASES)), ids=[" ".join(c[0][:2]) for c in CASES])
def test_a_command_without_its_extra_says_which_to_install(
    case: int, blocked_results: list[tuple[list[str], int, str, str]], store_dir: Path
) -> None:
    extra = CASES[case][1]
    argv, code, output, exception = blocked_results[case]
    assert code == MISSING_EXTRA_EXIT, (argv, output, exception)
    assert f"needs the '{extra}' extra" in output
    assert f"pip install 'tokenpools[{extra}]'" in output
    assert not (store_dir / "ch").exists()  # it stopped before doing anything


def test_an_imported_module_without_a_spec_counts_as_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lazy = types.ModuleType("faust")
    lazy.__spec__ = None  # what faust's lazy module looks like once imported
    monkeypatch.setitem(sys.modules, "faust", lazy)
    monkeypatch.setitem(sys.modules, "aiokafka", None)  # blocked: not importable
    assert missing_modules(Extra.WORKER) == ["aiokafka"]
