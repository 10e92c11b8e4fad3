"""The log rate limiter: every kind of message still shows, its volume is summarized, and the
number of lines per interval is bounded whatever the number of records."""

from __future__ import annotations

import logging

from connectors.sidecar.log_limit import RateLimitFilter, limit_log_rate


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _record(name: str, msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_a_flood_of_three_kinds_over_20_s_is_a_handful_of_lines() -> None:
    clock = _Clock()
    limiter = RateLimitFilter(interval_s=10.0, clock=clock)
    passed: list[str] = []
    for i in range(30_000):  # 1,500 records a second for 20 s, as aiokafka logs an outage
        clock.now = i / 1500
        for record in (
            _record("aiokafka", "Unable connect to node with id %s: %s", 1, "refused"),
            _record("aiokafka", "Unable to update metadata from %s", [1]),
            _record("aiokafka.producer.sender", "Got error produce response: %s", "x", level=30),
        ):
            if limiter.filter(record):
                passed.append(record.getMessage())
    assert len(passed) == 3 * 2  # each kind once per 10 s interval
    assert limiter.suppressed == 3 * 30_000 - len(passed)
    assert any("14999 more like this" in line for line in passed)  # the volume is not lost


def test_limit_log_rate_filters_every_handler_of_the_logger() -> None:
    logger = logging.getLogger("tokenpools-test-limit")
    handler = logging.Handler()
    logger.addHandler(handler)
    try:
        limiter = limit_log_rate(5.0, logger)
        assert limiter in handler.filters
    finally:
        logger.removeHandler(handler)
