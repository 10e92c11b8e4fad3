"""Issue 11, item 9: a sidecar never silently hashes keys with the public development salt."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from connectors.kafka.settings import BOOTSTRAP_ENV
from connectors.sidecar.runtime import InsecureSaltError, start_sidecar
from connectors.sidecar.settings import SidecarSettings
from tests.helpers.sidecar_stack import platform
from tokenpools.keys import DEV_SALT, SALT_ENV

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = SidecarSettings(pool="p", backends=["http://127.0.0.1:9"], instance="salt-test")


@pytest.mark.parametrize("salt", [None, "", DEV_SALT])
async def test_the_sidecar_refuses_the_development_salt_without_dev(
    monkeypatch: pytest.MonkeyPatch, salt: str | None
) -> None:
    if salt is None:
        monkeypatch.delenv(SALT_ENV, raising=False)
    else:
        monkeypatch.setenv(SALT_ENV, salt)
    with pytest.raises(InsecureSaltError, match=SALT_ENV):
        running = await start_sidecar(SETTINGS, config=platform())
        await running.close()


async def test_dev_allows_the_development_salt_and_a_real_salt_needs_no_dev(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(SALT_ENV, raising=False)
    running = await start_sidecar(SETTINGS, config=platform(), dev=True)
    await running.close()
    monkeypatch.setenv(SALT_ENV, "a-real-secret")
    running = await start_sidecar(SETTINGS, config=platform())
    async with aiohttp.ClientSession() as http, http.get(running.url + "/health") as resp:
        assert resp.status == 200
    await running.close()


def _sidecar_cli(*options: str, salt: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in (*BOOTSTRAP_ENV, SALT_ENV)}
    if salt is not None:
        env[SALT_ENV] = salt
    env["PYTHONPATH"] = str(ROOT)
    argv = [sys.executable, "-m", "tokenpools_cli.main", "sidecar", "run", *options]
    config = ROOT / "deploy" / "examples" / "overload.yaml"
    argv += ["--config", str(config), "--backend", "http://127.0.0.1:9", "--port", "0"]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_sidecar_run_exits_2_naming_the_variable_when_the_salt_is_unset() -> None:
    result = _sidecar_cli("--pool", "llama-8b", salt=None)
    assert result.returncode == 2, result.stdout + result.stderr
    assert SALT_ENV in result.stderr and "--dev" in result.stderr
