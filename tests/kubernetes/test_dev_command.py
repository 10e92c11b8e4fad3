"""`tokenpools dev kubernetes`: starts the control plane, says how to reach it, stops clean."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kubernetes import client, config

from tokenpools_cli.local.kubernetes import is_built

pytestmark = pytest.mark.slow


@pytest.mark.skipif(not is_built(), reason="the local control plane is not built (see conftest)")
def test_dev_kubernetes_serves_a_reachable_cluster_and_stops_every_component(
    tmp_path: Path,
) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tokenpools_cli.main",
            "dev",
            "kubernetes",
            "--data-dir",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    try:
        assert proc.stdout is not None
        lines = []
        end = time.monotonic() + 120
        while time.monotonic() < end:
            line = proc.stdout.readline()
            lines.append(line)
            if line.startswith("export KUBECONFIG=") or not line:
                break
        kubeconfig = lines[-1].strip().removeprefix("export KUBECONFIG=")
        assert Path(kubeconfig).exists(), "".join(lines)
        api = config.new_client_from_config(config_file=kubeconfig)
        version = client.VersionApi(api).get_code()
        assert version.git_version == "v1.37.2"
        assert client.CoreV1Api(api).list_namespace().items
        api.close()
        pids = _component_pids(tmp_path)
        assert len(pids) == 5
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "control plane stopped" in out
    assert not [p for p in pids if Path(f"/proc/{p}").exists()], "a component outlived the stop"


def _component_pids(data_dir: Path) -> list[int]:
    """Processes whose command line names this cluster's data directory."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if str(data_dir).encode() in cmd and b"tokenpools_cli.main" not in cmd:
                pids.append(int(entry.name))
    return pids
