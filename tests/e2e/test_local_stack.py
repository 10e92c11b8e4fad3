"""The one supervisor and the one wait: what the demo, the e2e and the worker tests rely on.

Plain Python child processes stand in for the services, so these run in a
second without a broker.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from connectors.kafka.broker import free_port
from tokenpools_cli.local.supervisor import SOURCE_ROOT, Health, LocalStack, StackError
from tokenpools_cli.local.waiting import WaitTimeout, wait_for, wait_until

PY = sys.executable


def http_server(stack: LocalStack, name: str) -> None:
    """A child that answers 200 on `/` (a directory listing) once it has bound its port."""
    health = Health(free_port(), "/")
    argv = [PY, "-m", "http.server", str(health.port), "--bind", "127.0.0.1"]
    argv += ["--directory", str(stack.workdir)]
    stack.launch(name, argv, health=health, timeout=20)


def test_a_killed_service_is_gone_and_the_others_keep_running_until_stop(tmp_path: Path) -> None:
    with LocalStack("127.0.0.1:1", "ns", tmp_path) as stack:
        http_server(stack, "a")
        http_server(stack, "b")
        a, b = stack.services["a"], stack.services["b"]
        assert a.url.startswith("http://127.0.0.1:")
        a.kill()
        assert a.process.returncode == -signal.SIGKILL
        assert b.alive
        with pytest.raises(StackError, match="a exited with -9"):
            stack.check_alive()
    assert b.process.returncode == -signal.SIGTERM


def test_a_service_that_exits_during_start_fails_with_its_log(tmp_path: Path) -> None:
    stack = LocalStack("127.0.0.1:1", "ns", tmp_path)
    argv = [PY, "-c", "print('bad config: no pools'); raise SystemExit(2)"]
    with pytest.raises(StackError, match=r"(?s)exited during start.*bad config: no pools"):
        stack.launch("broken", argv, health=Health(free_port(), "/health"), timeout=20)


def test_a_service_that_never_answers_is_stopped_when_the_wait_gives_up(tmp_path: Path) -> None:
    stack = LocalStack("127.0.0.1:1", "ns", tmp_path)
    argv = [PY, "-c", "import time; print('starting', flush=True); time.sleep(60)"]
    with pytest.raises(StackError, match=r"(?s)timed out after 1s waiting for mute.*starting"):
        stack.launch("mute", argv, health=Health(free_port(), "/health"), timeout=1)
    assert not stack.services["mute"].alive


def test_children_get_the_stacks_kafka_settings_the_extra_env_and_this_source(
    tmp_path: Path,
) -> None:
    code = "import os; print(os.environ['KAFKA_BOOTSTRAP'], os.environ['TOKENPOOLS_NAMESPACE'],"
    code += " os.environ['EXTRA'], os.environ['PYTHONPATH'].split(os.pathsep)[0])"
    stack = LocalStack("127.0.0.1:9", "ns1", tmp_path)
    service = stack.launch("env", [PY, "-c", code], env={"EXTRA": "x"})
    assert service.process.wait(20) == 0
    assert service.log.read_text().split() == ["127.0.0.1:9", "ns1", "x", str(SOURCE_ROOT)]


async def test_wait_for_takes_plain_and_coroutine_predicates_and_names_what_timed_out() -> None:
    calls: list[int] = []

    def third_time() -> bool:
        calls.append(1)
        return len(calls) >= 3

    async def never() -> bool:
        await asyncio.sleep(0)
        return False

    await wait_for(third_time, 5, "the third call", interval=0.01)
    assert len(calls) == 3
    with pytest.raises(WaitTimeout, match=r"timed out after 0\.2s waiting for nothing at all"):
        await wait_for(never, 0.2, "nothing at all", interval=0.01)


def test_wait_until_returns_once_true_and_raises_after_the_timeout() -> None:
    answers = iter([0, "", "yes"])
    wait_until(lambda: next(answers), 5, "a truthy answer", interval=0.01)
    with pytest.raises(WaitTimeout, match="waiting for the impossible"):
        wait_until(lambda: False, 0.1, "the impossible", interval=0.01)
