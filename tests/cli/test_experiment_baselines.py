"""The rate-limit baseline: fixed windows of requests and tokens per key, from entitlements."""

from __future__ import annotations

from connectors.baselines.rate_limit import FixedWindowLimiter, KeyLimits, limits_for
from tests.helpers.paths import EXAMPLES
from tokenpools.config_file import load_config


def test_limits_come_from_the_guarantee_or_else_the_burst() -> None:
    platform = load_config(EXAMPLES / "overload.yaml")
    by_name = {e.name: limits_for(e) for e in platform.entitlements}
    assert by_name["guaranteed-a"].tpm == 800 * 60  # guarantee.tps × 60
    assert by_name["guaranteed-a"].rpm == 288  # 6 requests per minute per 1000 TPM
    assert by_name["spot"].tpm == 6000 * 60  # no guarantee: its burst


def test_a_window_refuses_over_either_limit_until_it_rolls_over() -> None:
    limiter = FixedWindowLimiter([KeyLimits("a", rpm=3, tpm=1000, expected_output_tokens=1)])
    assert limiter.check("a", 400, now=60.0) is None
    assert limiter.check("a", 400, now=61.0) is None
    wait = limiter.check("a", 400, now=62.0)  # 1200 tokens > 1000
    assert wait == 58.0
    assert limiter.check("a", 100, now=63.0) is None  # still fits: 900
    assert limiter.check("a", 1, now=64.0) is not None  # the fourth request: over 3 RPM
    assert limiter.check("a", 400, now=120.0) is None  # a new window


def test_a_shorter_window_scales_the_per_minute_quotas() -> None:
    limiter = FixedWindowLimiter([KeyLimits("a", 60, 6000, 1)], window_s=10.0)
    assert limiter.check("a", 1000, now=0.0) is None
    assert limiter.check("a", 1, now=1.0) is not None  # 1000 tokens per 10 s window
