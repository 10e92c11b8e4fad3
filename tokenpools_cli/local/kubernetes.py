"""A real local Kubernetes control plane without Docker: etcd, kube-apiserver, scheduler,
controller-manager and kwok's fake kubelets, on loopback, from binaries built once.

The binaries come from the Go module proxy (`deploy/local/kubernetes/build.sh`) into
the project's cache; each start gets its own data directory, certificates
(`kubernetes_pki`) and kubeconfig. Used by `tokenpools dev kubernetes` and by the
test suite's `kube` fixture, so integration tests run against the real API server,
admission, RBAC, scheduler and controllers.

Pitfalls this encodes (each met once): `--advertise-address=127.0.0.1` needs
`--endpoint-reconciler-type=none`; without the controller-manager nobody creates
a namespace's `default` ServiceAccount, so the ServiceAccount admission plugin is
off then; kwok needs etcd 3.6 (3.4 refuses `RequestWatchProgress` and pods stall);
the apiserver stops before etcd.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from connectors.kafka.broker import free_port
from tokenpools_cli.local.kubernetes_pki import Pki, ensure_pki

K8S_VERSION = "v1.37.2"
BUILD_SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "local" / "kubernetes" / "build.sh"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
# The node kwok plays the kubelet for; ordinary workloads in tests land here.
KWOK_NODE = "kwok-node-0"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started or reached."""


def cache_dir(version: str = K8S_VERSION) -> Path:
    """Where the binaries live: `$TOKENPOOLS_CACHE`, else `$XDG_CACHE_HOME/tokenpools`, else
    `~/.cache/tokenpools`; then `kubernetes/<version>` (the same rule as build.sh)."""
    root = os.environ.get("TOKENPOOLS_CACHE")
    if not root:
        root = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tokenpools")
    return Path(root) / "kubernetes" / version


def bin_dir(version: str = K8S_VERSION) -> Path:
    return cache_dir(version) / "bin"


def build_marker(version: str = K8S_VERSION) -> Path:
    """Written by build.sh once every binary is in place; the test fixture waits for it."""
    return bin_dir(version) / ".complete"


def is_built(version: str = K8S_VERSION) -> bool:
    return build_marker(version).exists()


def build(version: str = K8S_VERSION, log: Path | None = None) -> Path:
    """Run build.sh (minutes the first time, instant afterwards); returns the bin directory."""
    if is_built(version):
        return bin_dir(version)
    if shutil.which("go") is None:
        raise ControlPlaneError(
            "the Go toolchain (go) is needed once to build the control plane; install Go >= 1.26"
        )
    env = {**os.environ, "K8S_VERSION": version}
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(open(log, "ab")) if log else None
        result = subprocess.run(
            ["bash", str(BUILD_SCRIPT), str(cache_dir(version))],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
        )
    if result.returncode != 0 or not is_built(version):
        raise ControlPlaneError(f"build.sh failed (exit {result.returncode}); see {log or 'above'}")
    return bin_dir(version)


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


@dataclass
class LocalKubernetes:
    """One local cluster; `start()` then `stop()`, or use it as a context manager."""

    data_dir: Path | None = None
    controller_manager: bool = True
    scheduler: bool = True
    kwok: bool = True
    version: str = K8S_VERSION
    port: int = 0
    _procs: list[_Proc] = field(default_factory=list)
    _own_dir: bool = False

    def __post_init__(self) -> None:
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="tokenpools-k8s-"))
            self._own_dir = True
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()

    @property
    def dir(self) -> Path:
        assert self.data_dir is not None
        return self.data_dir

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    @property
    def running(self) -> bool:
        return bool(self._procs) and all(p.popen.poll() is None for p in self._procs)

    def start(self, timeout: float = 60.0) -> Path:
        """Start every component in order and wait until each answers; returns the kubeconfig."""
        bins = bin_dir(self.version)
        wanted = ["etcd", "kube-apiserver"]
        wanted += ["kube-controller-manager"] * self.controller_manager
        wanted += ["kube-scheduler"] * self.scheduler
        wanted += ["kwok", "kwok-stages.yaml"] * self.kwok
        missing = [c for c in wanted if not (bins / c).exists()]
        if missing:
            raise ControlPlaneError(
                f"not built: {', '.join(missing)} in {bins}; run `tokenpools dev kubernetes "
                "--build-only` (the first build takes 15 min on 2 idle cores, over an hour on a "
                "busy one)"
            )
        pki = ensure_pki(self.dir / "pki")
        self._write_kubeconfig(pki)
        try:
            etcd = self._start_etcd(bins)
            self._start_apiserver(bins, pki, etcd, timeout)
            if self.controller_manager:
                self._start_controller(
                    bins / "kube-controller-manager",
                    f"--service-account-private-key-file={pki.sa_key}",
                    f"--root-ca-file={pki.ca_cert}",
                    "--use-service-account-credentials=false",
                    # A virtual node that misses its Lease is NotReady within seconds.
                    "--node-monitor-grace-period=20s",
                )
            if self.scheduler:
                self._start_controller(bins / "kube-scheduler")
            if self.kwok:
                self._launch(
                    "kwok",
                    [
                        str(bins / "kwok"),
                        f"--config={bins / 'kwok-stages.yaml'}",
                        f"--kubeconfig={self.kubeconfig}",
                        f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
                        f"--server-address=127.0.0.1:{free_port()}",
                        "--cidr=10.244.0.0/16",
                        "--node-ip=127.0.0.1",
                    ],
                )
            time.sleep(0.5)
            self._check_alive()
        except BaseException:
            self.stop()
            raise
        return self.kubeconfig

    def stop(self, timeout: float = 20.0) -> None:
        """Stop in reverse start order: everything else, then the apiserver, then etcd last."""
        procs, self._procs = self._procs, []
        for proc in reversed(procs):
            if proc.popen.poll() is not None:
                continue
            proc.popen.send_signal(signal.SIGTERM)
            try:
                proc.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait(10)

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> LocalKubernetes:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def logs(self, name: str, tail: int = 40) -> str:
        path = self.dir / "logs" / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-tail:])

    def _start_controller(self, binary: Path, *flags: str) -> _Proc:
        """The scheduler or the controller-manager: a client of the apiserver through the admin
        kubeconfig (for delegated authentication and authorization too), serving on its own
        loopback port, the only instance (no leader election); then its own `flags`."""
        return self._launch(
            binary.name,
            [
                str(binary),
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
                *flags,
            ],
        )

    def _launch(self, name: str, cmd: list[str]) -> _Proc:
        logs = self.dir / "logs"
        logs.mkdir(exist_ok=True)
        log = logs / f"{name}.log"
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        proc = _Proc(name, popen, log)
        self._procs.append(proc)
        return proc

    def _check_alive(self) -> None:
        for proc in self._procs:
            if proc.popen.poll() is not None:
                raise ControlPlaneError(
                    f"{proc.name} exited ({proc.popen.returncode}):\n{self.logs(proc.name)}"
                )

    def _start_etcd(self, bins: Path) -> str:
        client, peer = free_port(), free_port()
        url = f"http://127.0.0.1:{client}"
        self._launch(
            "etcd",
            [
                str(bins / "etcd"),
                "--name=local",
                f"--data-dir={self.dir / 'etcd'}",
                f"--listen-client-urls={url}",
                f"--advertise-client-urls={url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=local=http://127.0.0.1:{peer}",
                f"--listen-metrics-urls=http://127.0.0.1:{free_port()}",
                # A throwaway cluster: durability is not worth an fsync per write here.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        self._wait(lambda: _http_ok(f"{url}/health"), "etcd /health", 30.0)
        return url

    def _start_apiserver(self, bins: Path, pki: Pki, etcd: str, timeout: float) -> None:
        admission = (
            [] if self.controller_manager else ["--disable-admission-plugins=ServiceAccount"]
        )
        self._launch(
            "kube-apiserver",
            [
                str(bins / "kube-apiserver"),
                f"--etcd-servers={etcd}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                "--endpoint-reconciler-type=none",
                f"--secure-port={self.port}",
                f"--cert-dir={self.dir / 'pki'}",
                f"--tls-cert-file={pki.server_cert}",
                f"--tls-private-key-file={pki.server_key}",
                f"--client-ca-file={pki.ca_cert}",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                "--service-account-issuer=https://kubernetes.default.svc",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--authorization-mode=Node,RBAC",
                "--profiling=false",
                *admission,
            ],
        )
        context = ssl.create_default_context(cafile=str(pki.ca_cert))
        context.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
        self._wait(
            lambda: _http_ok(f"{self.server}/readyz", context), "kube-apiserver /readyz", timeout
        )

    def _wait(self, ready: object, what: str, timeout: float) -> None:
        assert callable(ready)
        end = time.monotonic() + timeout
        while not ready():
            self._check_alive()
            if time.monotonic() > end:
                raise ControlPlaneError(f"timed out after {timeout:g}s waiting for {what}")
            time.sleep(0.2)

    def _write_kubeconfig(self, pki: Pki) -> None:
        self.kubeconfig.write_text(
            f"""apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: {self.server}
    certificate-authority: {pki.ca_cert}
users:
- name: admin
  user:
    client-certificate: {pki.admin_cert}
    client-key: {pki.admin_key}
contexts:
- name: local
  context: {{cluster: local, user: admin}}
current-context: local
"""
        )
        self.kubeconfig.chmod(0o600)


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return bool(response.status == 200)
    except OSError:
        return False
