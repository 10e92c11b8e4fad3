"""How a request picks its backend, and how refused backends are skipped for a while."""

from __future__ import annotations

from connectors.sidecar.backends import BackendPool, Strategy


def test_round_robin_takes_turns() -> None:
    pool = BackendPool(["http://a", "http://b", "http://c"])
    assert [pool.pick(0.0).url for _ in range(6)] == ["http://a", "http://b", "http://c"] * 2


def test_least_loaded_picks_the_backend_with_fewest_in_flight() -> None:
    pool = BackendPool(["http://a", "http://b", "http://c"], Strategy.LEAST_LOADED)
    a, b, c = pool.backends
    a.in_flight, b.in_flight, c.in_flight = 3, 1, 2
    assert {pool.pick(0.0).url for _ in range(5)} == {"http://b"}


def test_a_refusing_backend_is_skipped_until_its_cooldown_ends() -> None:
    pool = BackendPool(["http://a", "http://b"], cooldown_s=2.0)
    a, _ = pool.backends
    pool.mark_down(a, now=10.0)
    assert {pool.pick(11.0).url for _ in range(4)} == {"http://b"}
    assert {pool.pick(12.0).url for _ in range(4)} == {"http://a", "http://b"}


def test_none_is_picked_while_every_backend_cools_down() -> None:
    pool = BackendPool(["http://a"], cooldown_s=1.0)
    pool.mark_down(pool.backends[0], now=0.0)
    assert pool.pick(0.5) is None and not pool.any_available(0.5)
    assert pool.pick(1.0) is not None
