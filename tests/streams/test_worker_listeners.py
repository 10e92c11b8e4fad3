"""Issue 11, item 9: the worker's listeners (Prometheus metrics, Faust web) bind loopback
unless an address is configured."""

from __future__ import annotations

import sys

import pytest

from connectors.kafka.broker import free_port
from streams.app import _app_options
from streams.metrics import WorkerMetrics
from streams.settings import WorkerSettings
from tests.helpers.listeners import listening_addresses

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads listening sockets from /proc/net"
)


def test_worker_metrics_listen_on_loopback_by_default() -> None:
    port = free_port()
    WorkerMetrics().serve(port)  # a daemon thread; the process ends it
    assert listening_addresses(port) == {"127.0.0.1"}


def test_worker_metrics_listen_where_configured() -> None:
    settings = WorkerSettings.from_env({"TOKENPOOLS_LISTEN_HOST": "0.0.0.0"})
    assert settings.listen_host == "0.0.0.0"
    assert WorkerSettings.from_env({}).listen_host == "127.0.0.1"


def test_faust_web_binds_the_same_address() -> None:
    assert _app_options(WorkerSettings())["web_bind"] == "127.0.0.1"
    assert _app_options(WorkerSettings(listen_host="10.0.0.5"))["web_bind"] == "10.0.0.5"
