"""Log rate limiting: one line per message kind per interval, then a count of what was held.

During a Kafka outage aiokafka logs every failed request and every retry,
and the sidecar's own reporter would log every batch it cannot send: a
20-second outage once wrote 194,521 lines (12 MB). A `RateLimitFilter` on the
log handlers lets the first record of each kind (logger, level, message
template) through per interval, drops the rest, and says how many it dropped
on the next line of that kind, so the log keeps every distinct message and
its volume but stays bounded in size.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class RateLimitFilter(logging.Filter):
    """Lets through at most one record per (logger, level, template) per `interval_s`."""

    def __init__(self, interval_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.interval_s = interval_s
        self._clock = clock
        self._kinds: dict[tuple[str, int, str], tuple[float, int]] = {}  # → (opened, held)
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        kind = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        seen = self._kinds.get(kind)
        if seen is not None and now - seen[0] < self.interval_s:
            self._kinds[kind] = (seen[0], seen[1] + 1)
            self.suppressed += 1
            return False
        if seen is not None and seen[1]:
            record.msg = (
                f"{record.msg} [{seen[1]} more like this in the last {now - seen[0]:.0f} s]"
            )
        if len(self._kinds) > 10_000:  # unbounded templates (f-strings): forget the oldest
            self._kinds.clear()
        self._kinds[kind] = (now, 0)
        return True


def limit_log_rate(
    interval_s: float = 10.0, logger: logging.Logger | None = None
) -> RateLimitFilter:
    """Put one `RateLimitFilter` on every handler of `logger` (default: the root logger)."""
    target = logger or logging.getLogger()
    limiter = RateLimitFilter(interval_s)
    for handler in target.handlers:
        handler.addFilter(limiter)
    return limiter
