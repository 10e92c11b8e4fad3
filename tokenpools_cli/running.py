"""How the long-running servers of the CLI run: on uvloop, until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from typing import Any


async def until_signalled() -> None:
    """Return on SIGINT or SIGTERM (servers then close their connections cleanly)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def run_async(main: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop when it is installed (it is a dependency of the fast path)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)
