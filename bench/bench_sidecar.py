"""What the sidecar costs a request, side by side with calling the engine directly and with
LiteLLM's proxy, all measured in this run against the engine simulator in `--fast` mode.

Prints:
  - added latency p50/p99 at moderate load (a few requests in flight), sidecar − direct;
  - max request rate (closed loop, many connections) relative to the direct rate;
  - resident memory of the proxy process with 10k inference keys and 1k requests in flight
    (held in flight by a second, slow engine simulator);
  - the same figures for LiteLLM proxy (`litellm[proxy]` in its own virtualenv under
    ~/.cache/tokenpools/litellm-venv, a master key, a model-level `tpm` limit), or why not.

Everything runs on 127.0.0.1; every load phase is bounded in time. The sidecar produces its
request events to a local Kafka broker (started here) unless `--kafka none`.

    .venv/bin/python bench/bench_sidecar.py [--duration 3] [--kafka local|none|HOST:PORT]

`--cpu-only` measures just the sidecar's CPU per proxied request (CPU seconds of its process
÷ requests answered, at a fixed number in flight): on a shared machine wall-clock rates are
noisy, CPU per request much less so. With `--against TREE` a second sidecar, run from another
checkout (e.g. a worktree at main), is measured in the same run, the two alternating phase by
phase; with `--profile FILE` the sidecar runs under cProfile and its top entries are printed.

    .venv/bin/python bench/bench_sidecar.py --cpu-only --kafka HOST:PORT --against /work/old
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil
import yaml

from connectors.kafka.admin import ensure_topics
from connectors.kafka.broker import LocalKafka, free_port
from tokenpools.keys import hash_key, key_salt
from tokenpools.topics import Topics

ROOT = Path(__file__).resolve().parents[1]
TOKENPOOLS = [sys.executable, "-m", "tokenpools_cli.main"]
LITELLM_VENV = Path.home() / ".cache" / "tokenpools" / "litellm-venv"
LITELLM_KEY = "sk-bench-master"
FAST, SLOW = "sim-model", "sim-slow"
BODY = {"model": FAST, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8}


# -- processes ----------------------------------------------------------------------------------
@dataclass
class Server:
    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def cpu_s(self) -> float:
        """CPU seconds used so far by the server and its children."""
        return sum(self.cpu_times())

    def cpu_times(self) -> tuple[float, float]:
        """(user, system) CPU seconds used so far by the server and its children."""
        try:
            p = psutil.Process(self.proc.pid)
            times = [q.cpu_times() for q in [p, *p.children(recursive=True)]]
        except psutil.NoSuchProcess:
            return float("nan"), float("nan")
        return sum(t.user for t in times), sum(t.system for t in times)

    @property
    def rss_mb(self) -> float:
        """Resident memory of the server and its children (LiteLLM forks workers)."""
        try:
            p = psutil.Process(self.proc.pid)
            procs = [p, *p.children(recursive=True)]
            return sum(q.memory_info().rss for q in procs) / 2**20
        except psutil.NoSuchProcess:
            return float("nan")


def launch(
    name: str,
    cmd: list[str],
    port: int,
    workdir: Path,
    health: str,
    timeout_s: float = 120.0,
    env: dict[str, str] | None = None,
    cwd: Path = ROOT,
) -> Server:
    log = workdir / f"{name}.log"
    proc = subprocess.Popen(
        cmd,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    server = Server(name, f"http://127.0.0.1:{port}", proc, log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited during start:\n{log.read_text()[-2000:]}")
        with contextlib.suppress(OSError):
            import urllib.request

            with urllib.request.urlopen(server.url + health, timeout=1) as resp:
                if resp.status == 200:
                    return server
        time.sleep(0.3)
    stop(server)
    raise RuntimeError(
        f"{name} did not become healthy in {timeout_s:.0f}s:\n{log.read_text()[-2000:]}"
    )


def stop(server: Server) -> None:
    if server.proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.proc.pid, signal.SIGTERM)
        try:
            server.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(server.proc.pid, signal.SIGKILL)
            server.proc.wait(5)


def engine_sim(workdir: Path, name: str, fast: bool) -> Server:
    port = free_port()
    cmd = [*TOKENPOOLS, "engine-sim", "run", "--port", str(port)]
    if fast:
        cmd += ["--fast", "--model", FAST]
    else:  # long steps, room for thousands: requests stay in flight ~3 s
        cmd += [
            "--model",
            SLOW,
            "--max-num-seqs",
            "4096",
            "--num-gpu-blocks",
            "1000000",
            "--max-num-batched-tokens",
            "1000000",
            "--step-base-ms",
            "100",
            "--step-per-seq-ms",
            "0",
            "--prefill-per-token-ms",
            "0",
        ]
    return launch(name, cmd, port, workdir, "/health")


def bench_config(workdir: Path, keys: int, per_entitlement: int = 100) -> tuple[Path, list[str]]:
    """One pool, `keys` inference keys spread over guaranteed entitlements with ample limits."""
    salt = key_salt()
    raw = [f"sk-bench-{i:05d}" for i in range(keys)]
    n_ent = max(1, keys // per_entitlement)
    entitlements = [
        {
            "name": f"tenant-{e:03d}",
            "pool": "bench",
            "tier": "guaranteed",
            "guarantee": {"tps": 1e7, "kv": 1e9, "conc": 5000},
            "slo": {"max_admission_delay_ms": 1000},
            "key_hashes": [hash_key(k, salt) for k in raw[e::n_ent]],
        }
        for e in range(n_ent)
    ]
    config = {
        "version": 1,
        "pools": [
            {
                "name": "bench",
                "replicas": 1,
                "target_utilization": 1.0,
                "per_replica": {"tps": 1e7 * n_ent, "kv": 1e9 * n_ent, "conc": 5000 * n_ent},
            }
        ],
        "entitlements": entitlements,
    }
    path = workdir / "bench-config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, raw


def sidecar(
    workdir: Path,
    name: str,
    config: Path,
    backend: str,
    kafka: str | None,
    namespace: str,
    tree: Path = ROOT,
    profile: Path | None = None,
    http_server: str | None = None,
) -> Server:
    """A sidecar run from the checkout `tree` (under cProfile, writing `profile`, if given);
    `http_server` picks its clients' server (None: the tree's default)."""
    port = free_port()
    python = [sys.executable, *(["-m", "cProfile", "-o", str(profile)] if profile else [])]
    cmd = [
        *python,
        "-m",
        "tokenpools_cli.main",
        "sidecar",
        "run",
        "--dev",  # keys hashed with key_salt(): the development salt unless one is set
        "--config",
        str(config),
        "--backend",
        backend,
        "--port",
        str(port),
        "--instance",
        name,
        "--namespace",
        namespace,
        "--kafka",
        kafka or "",
        *(["--http-server", http_server] if http_server else []),
    ]
    env = {"KAFKA_BOOTSTRAP": kafka or "", "PYTHONPATH": str(tree)}
    return launch(name, cmd, port, workdir, "/health", env=env, cwd=tree)


def litellm(workdir: Path, fast_url: str, slow_url: str) -> Server:
    exe = LITELLM_VENV / "bin" / "litellm"
    if not exe.exists():
        raise RuntimeError(
            f"{exe} not found. Install it outside the project venv with:\n"
            f"  python3.11 -m venv {LITELLM_VENV} && {LITELLM_VENV}/bin/pip install "
            "'litellm[proxy]'"
        )
    config = {
        "model_list": [
            {
                "model_name": model,
                "litellm_params": {
                    "model": f"openai/{model}",
                    "api_base": url + "/v1",
                    "api_key": "none",
                    "tpm": 100_000_000,
                    "rpm": 10_000_000,
                },
            }
            for model, url in ((FAST, fast_url), (SLOW, slow_url))
        ],
        "general_settings": {"master_key": LITELLM_KEY},
        "litellm_settings": {"set_verbose": False, "json_logs": False},
    }
    path = workdir / "litellm.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    return launch(
        "litellm",
        [str(exe), "--config", str(path), "--host", "127.0.0.1", "--port", str(port)],
        port,
        workdir,
        "/health/liveliness",
        timeout_s=180,
        env={"LITELLM_LOG": "ERROR", "NO_DOCS": "True"},
    )


# -- load -------------------------------------------------------------------------------------
@dataclass
class Run:
    latencies: list[float]
    errors: int
    elapsed: float

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed

    def pct(self, q: float) -> float:
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000 if xs else float("nan")


async def closed_loop(
    url: str, keys: list[str], concurrency: int, duration: float, body: dict = BODY
) -> Run:
    """`concurrency` clients, each sending the next request when the last one answered."""
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        loop = asyncio.get_running_loop()
        end = loop.time() + duration
        rng = random.Random(1)

        async def client() -> None:
            nonlocal errors
            while loop.time() < end:
                headers = {"Authorization": f"Bearer {rng.choice(keys)}"}
                t0 = time.perf_counter()
                try:
                    async with http.post(
                        url + "/v1/chat/completions", json=body, headers=headers
                    ) as resp:
                        await resp.read()
                        ok = resp.status == 200
                except aiohttp.ClientError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors += 1

        start = loop.time()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return Run(latencies, errors, loop.time() - start)


def wrk_rate(url: str, key: str, connections: int, duration: float, workdir: Path) -> Run | None:
    """Max rate by `wrk` (C, one thread) when installed: the load generator is then not the
    bottleneck. Returns None without wrk."""
    if shutil.which("wrk") is None:
        return None
    script = workdir / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = '{__import__('json').dumps(BODY)}'\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {key}"\n'
    )
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            "-s",
            str(script),
            url + "/v1/chat/completions",
        ],
        capture_output=True,
        text=True,
        timeout=duration + 30,
    )
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out.stdout).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out.stdout)
    errors = int(bad.group(1)) if bad else 0
    errors += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out.stdout))
    done = int(rate * duration)
    return Run([0.0] * done, errors, duration)


async def hold_in_flight(
    url: str, keys: list[str], n: int, server: Server, in_flight: Callable[[], Awaitable[int]]
) -> tuple[float, int]:
    """Start `n` slow requests at once; RSS of `server` when (nearly) all are in flight."""
    body = {**BODY, "model": SLOW, "max_tokens": 30}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=120)
    ) as http:

        async def one(i: int) -> None:
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with http.post(
                    url + "/v1/chat/completions",
                    json=body,
                    headers={"Authorization": f"Bearer {keys[i % len(keys)]}"},
                ) as resp:
                    await resp.read()

        tasks = [asyncio.ensure_future(one(i)) for i in range(n)]
        peak_rss, peak_n = 0.0, 0
        deadline = asyncio.get_running_loop().time() + 20
        while asyncio.get_running_loop().time() < deadline and not all(t.done() for t in tasks):
            await asyncio.sleep(0.2)
            seen = await in_flight()
            if seen >= peak_n:
                peak_n, peak_rss = seen, server.rss_mb
            if seen >= n:
                break
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return peak_rss, peak_n


async def sidecar_in_flight(url: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(url + "/metrics") as resp:
        text = await resp.text()
    return int(
        sum(
            float(v)
            for v in re.findall(r"^tokenpools_sidecar_in_flight\{[^}]*\} ([\d.e+]+)$", text, re.M)
        )
    )


def engine_in_flight(engine: Server) -> Callable[[], Awaitable[int]]:
    async def count() -> int:
        async with aiohttp.ClientSession() as http, http.get(engine.url + "/metrics") as resp:
            text = await resp.text()
        found = re.findall(
            r"^vllm:num_requests_(?:running|waiting)\{[^}]*\} ([\d.e+]+)$", text, re.M
        )
        return int(sum(float(v) for v in found))

    return count


async def cpu_per_request(
    server: Server, keys: list[str], concurrency: int, duration: float
) -> tuple[float, float, int]:
    """The server's user and system CPU µs per answered request over one closed-loop phase,
    and the requests answered.

    The phase ends with a short pause so the request events it caused are sent (their cost is
    part of a request's) before the CPU is read again.
    """
    user, system = server.cpu_times()
    run = await closed_loop(server.url, keys, concurrency, duration)
    await asyncio.sleep(0.3)
    done = max(1, len(run.latencies))
    user2, system2 = server.cpu_times()
    return (user2 - user) / done * 1e6, (system2 - system) / done * 1e6, done


def print_profile(path: Path, top: int = 30) -> None:
    """The profile's top entries by own time (what the docs' profile section quotes)."""
    import pstats

    stats = pstats.Stats(str(path))
    stats.sort_stats("tottime").print_stats(top)


async def cpu_only(args: argparse.Namespace) -> None:
    """The sidecar's CPU per request (and another checkout's, alternating), or its profile."""
    workdir = Path(tempfile.mkdtemp(prefix="tokenpools-bench-sidecar-cpu-"))
    servers: list[Server] = []
    with kafka_for(args.kafka) as bootstrap:
        namespace = f"bench{uuid.uuid4().hex[:6]}"
        if bootstrap:
            await ensure_topics(bootstrap, Topics(namespace=namespace))
        profile = workdir / "sidecar.prof" if args.profile else None
        try:
            fast = engine_sim(workdir, "engine-fast", fast=True)
            servers.append(fast)
            config, keys = bench_config(workdir, args.keys)
            trees = {"this": ROOT, **({"against": Path(args.against)} if args.against else {})}
            if args.aiohttp_too:
                trees["aiohttp"] = ROOT
            proxies = {
                name: sidecar(
                    workdir,
                    f"sidecar-{name}",
                    config,
                    fast.url,
                    bootstrap,
                    namespace,
                    tree,
                    profile if name == "this" else None,
                    "aiohttp" if name == "aiohttp" else None,
                )
                for name, tree in trees.items()
            }
            servers.extend(proxies.values())
            for proxy in proxies.values():  # warm up
                await closed_loop(proxy.url, keys, 2, 1.0)
            cpu: dict[str, list[tuple[float, float]]] = {name: [] for name in proxies}
            total: dict[str, int] = dict.fromkeys(proxies, 0)
            for _ in range(args.rounds):
                for name, proxy in proxies.items():
                    user, system, done = await cpu_per_request(
                        proxy, keys, args.moderate, args.duration
                    )
                    cpu[name].append((user, system))
                    total[name] += done
        finally:
            for server in reversed(servers):
                stop(server)
    print(
        f"sidecar CPU per request ({args.moderate} in flight, {args.rounds}×{args.duration:g}s "
        f"per sidecar, events to {'Kafka ' + bootstrap if bootstrap else 'nowhere'}; "
        f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}):"
    )
    for name, values in cpu.items():
        xs = sorted(u + s for u, s in values)
        users, systems = sorted(u for u, _ in values), sorted(s for _, s in values)
        mid = len(xs) // 2
        print(
            f"  {name:<8} {trees[name]}: median {xs[mid]:.1f} µs/request "
            f"(user {users[mid]:.1f}, system {systems[mid]:.1f}; min {xs[0]:.1f}, "
            f"max {xs[-1]:.1f}; {total[name]} requests)"
        )
    for other in ("against", "aiohttp"):  # phases alternate: each round's pair saw one machine
        if other in cpu:
            pairs = zip(cpu["this"], cpu[other], strict=True)
            ratios = sorted((u + s) / (u2 + s2) for (u, s), (u2, s2) in pairs)
            print(
                f"  this ÷ {other}, per round: median {ratios[len(ratios) // 2]:.3f} "
                f"(min {ratios[0]:.3f}, max {ratios[-1]:.3f})"
            )
    if profile is not None and args.profile:
        shutil.copy(profile, args.profile)
        print(f"\nprofile of {trees['this']} (cProfile, {args.profile}):")
        print_profile(profile)
    shutil.rmtree(workdir, ignore_errors=True)


# -- the run ----------------------------------------------------------------------------------
@contextlib.contextmanager
def kafka_for(choice: str) -> Iterator[str | None]:
    if choice == "none":
        yield None
    elif choice == "local":
        with LocalKafka() as broker:
            yield broker.bootstrap
    else:
        yield choice


async def main(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="tokenpools-bench-sidecar-"))
    servers: list[Server] = []
    print(
        f"machine: {os.cpu_count()} CPUs; python {sys.version.split()[0]}; "
        f"load: aiohttp closed loop (latency), {'wrk -t1' if shutil.which('wrk') else 'aiohttp'}"
        " (max rate); all on 127.0.0.1"
    )
    with kafka_for(args.kafka) as bootstrap:
        namespace = f"bench{uuid.uuid4().hex[:6]}"
        if bootstrap:
            await ensure_topics(bootstrap, Topics(namespace=namespace))
        print(f"sidecar request events: {'Kafka ' + bootstrap if bootstrap else 'disabled'}")
        try:
            fast = engine_sim(workdir, "engine-fast", fast=True)
            servers.append(fast)
            slow = engine_sim(workdir, "engine-slow", fast=False)
            servers.append(slow)
            config, keys = bench_config(workdir, args.keys)
            proxy = sidecar(workdir, "sidecar-bench", config, fast.url, bootstrap, namespace)
            servers.append(proxy)
            targets = {"direct": (fast.url, ["none"]), "tokenpools": (proxy.url, keys)}
            proxies = {"direct": fast, "tokenpools": proxy}
            if args.aiohttp_too:  # the same tree with aiohttp facing the clients, side by side
                old = sidecar(
                    workdir, "sidecar-aiohttp", config, fast.url, bootstrap, namespace,
                    http_server="aiohttp",
                )  # fmt: skip
                servers.append(old)
                targets["tp-aiohttp"] = (old.url, keys)
                proxies["tp-aiohttp"] = old
            lite_error = None
            if not args.no_litellm:
                try:
                    lite = litellm(workdir, fast.url, slow.url)
                    servers.append(lite)
                    targets["litellm"] = (lite.url, [LITELLM_KEY])
                    proxies["litellm"] = lite
                except Exception as exc:
                    lite_error = str(exc)

            for url, ks in targets.values():  # warm up every path
                await closed_loop(url, ks, 2, 0.5)

            lat: dict[str, list[Run]] = {name: [] for name in targets}
            for _ in range(args.rounds):  # interleaved, so drift hits every path alike
                for name, (url, ks) in targets.items():
                    lat[name].append(await closed_loop(url, ks, args.moderate, args.duration))
            merged = {
                n: Run(
                    [x for r in runs for x in r.latencies],
                    sum(r.errors for r in runs),
                    sum(r.elapsed for r in runs),
                )
                for n, runs in lat.items()
            }

            rounds: dict[str, list[Run]] = {name: [] for name in targets}
            cpu_s: dict[str, float] = dict.fromkeys(targets, 0.0)
            for _ in range(args.rate_rounds):  # interleaved, like the latency rounds
                for name, (url, ks) in targets.items():
                    before = proxies[name].cpu_s()
                    rounds[name].append(
                        wrk_rate(url, ks[0], args.connections, args.duration, workdir)
                        or await closed_loop(url, ks, args.connections, args.duration)
                    )
                    cpu_s[name] += proxies[name].cpu_s() - before
            # the round with the median rate stands for each path; ratios are per round
            rates = {
                n: sorted(runs, key=lambda r: r.rate)[len(runs) // 2] for n, runs in rounds.items()
            }
            cpu_us = {  # proxy CPU per request at max rate, over every round
                n: cpu_s[n] / max(1, sum(r.rate * r.elapsed for r in runs)) * 1e6
                for n, runs in rounds.items()
            }

            memory: dict[str, tuple[float, float, int]] = {}
            slow_proxy = sidecar(workdir, "sidecar-mem", config, slow.url, bootstrap, namespace)
            servers.append(slow_proxy)
            idle = slow_proxy.rss_mb
            rss, n = await hold_in_flight(
                slow_proxy.url,
                keys,
                args.inflight,
                slow_proxy,
                lambda: sidecar_in_flight(slow_proxy.url),
            )
            memory["tokenpools"] = (idle, rss, n)
            if "litellm" in targets:
                await asyncio.sleep(4)  # let the slow engine drain
                idle = lite.rss_mb
                rss, n = await hold_in_flight(
                    lite.url, [LITELLM_KEY], args.inflight, lite, engine_in_flight(slow)
                )
                memory["litellm"] = (idle, rss, n)
        finally:
            for server in reversed(servers):
                stop(server)

    direct = merged["direct"]
    print(
        f"\nadded latency at moderate load ({args.moderate} in flight, {args.rounds}×"
        f"{args.duration:g}s per path, {BODY['max_tokens']} output tokens):"
    )
    print(
        f"  {'path':<11} {'p50 ms':>8} {'p99 ms':>8} {'added p50':>10} {'added p99':>10}"
        f" {'requests':>9} {'errors':>7}"
    )
    for name, run in merged.items():
        added_p50 = run.pct(0.5) - direct.pct(0.5)
        added_p99 = run.pct(0.99) - direct.pct(0.99)
        added = "" if name == "direct" else f"{added_p50:>+10.3f} {added_p99:>+10.3f}"
        print(
            f"  {name:<11} {run.pct(0.5):>8.3f} {run.pct(0.99):>8.3f} "
            f"{added or ' ' * 21:>21} {len(run.latencies):>9} {run.errors:>7}"
        )
    print(
        f"\nmax request rate ({args.connections} connections, {args.rate_rounds}×"
        f"{args.duration:g}s per path, the median round):"
    )
    for name, run in rates.items():
        whose = "engine simulator" if name == "direct" else "proxy"
        print(
            f"  {name:<11} {run.rate:>9.0f} req/s  {run.rate / rates['direct'].rate:>6.1%} of "
            f"direct  errors {run.errors:<4} {whose} CPU {cpu_us[name]:.0f} µs/request"
        )
        if args.rate_rounds > 1 and name != "direct":
            pairs = zip(rounds[name], rounds["direct"], strict=True)
            ratios = sorted(r.rate / d.rate for r, d in pairs)
            print(
                f"  {'':<11} ÷ direct per round: median {ratios[len(ratios) // 2]:.1%} "
                f"(min {ratios[0]:.1%}, max {ratios[-1]:.1%})"
            )
    print(
        f"\nresident memory ({args.keys} keys configured in the sidecar; "
        f"{args.inflight} requests started at once against a slow engine):"
    )
    for name, (idle, rss, n) in memory.items():
        print(f"  {name:<11} idle {idle:>6.0f} MB   with {n:>5} in flight {rss:>6.0f} MB")
    if "litellm" in memory:
        print(
            "  (LiteLLM: the master key only — its per-key budgets need a Postgres database, "
            "which this bench does not run)"
        )
    if lite_error is not None:
        print(f"\nLiteLLM was NOT measured: {lite_error}")
    elif "litellm" in merged:
        lm, tp = merged["litellm"], merged["tokenpools"]
        print(
            f"\ntokenpools vs LiteLLM: added p50 "
            f"{(lm.pct(0.5) - direct.pct(0.5)) / max(1e-9, tp.pct(0.5) - direct.pct(0.5)):.0f}×"
            f" smaller; max rate {rates['tokenpools'].rate / rates['litellm'].rate:.1f}× higher"
        )
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per load phase")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved latency rounds")
    parser.add_argument("--moderate", type=int, default=4, help="in flight for latency")
    parser.add_argument("--connections", type=int, default=64, help="connections for max rate")
    parser.add_argument(
        "--rate-rounds", type=int, default=3, help="interleaved max-rate rounds (the median stands)"
    )
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--inflight", type=int, default=1_000)
    parser.add_argument("--kafka", default="local", help="local | none | HOST:PORT")
    parser.add_argument("--no-litellm", action="store_true")
    parser.add_argument(
        "--cpu-only", action="store_true", help="only the sidecar's CPU per request"
    )
    parser.add_argument("--against", help="--cpu-only: also measure a sidecar from this checkout")
    parser.add_argument(
        "--aiohttp-too",
        action="store_true",
        help="also measure this tree's sidecar with aiohttp as its clients' server, side by side",
    )
    parser.add_argument("--profile", help="--cpu-only: run the sidecar under cProfile, to here")
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    options = parser.parse_args()
    asyncio.run(cpu_only(options) if options.cpu_only else main(options))
