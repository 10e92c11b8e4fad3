"""Read usage out of a streamed (SSE) completion while relaying it byte for byte.

vLLM reports a stream's usage in one extra chunk (empty `choices`, a `usage`
object) before `data: [DONE]`, only when the request set
`stream_options.include_usage`. The sidecar always asks for it; when the
client did not, `UsageTap` drops that chunk so the client receives exactly
the stream it asked for. Events are forwarded as soon as they are complete;
only events that mention "usage" are parsed.
"""

from __future__ import annotations

from typing import Any

import orjson

_EVENT_END = b"\n\n"


class UsageTap:
    """Feed upstream bytes in, get the bytes to forward out; `usage` is set once seen."""

    __slots__ = ("_pending", "chunks", "strip_usage_chunk", "usage")

    def __init__(self, strip_usage_chunk: bool) -> None:
        self.strip_usage_chunk = strip_usage_chunk
        self.usage: dict[str, Any] | None = None
        self.chunks = 0  # data events relayed: about one per generated token (or step)
        self._pending = b""

    def feed(self, data: bytes) -> bytes:
        buffer = self._pending + data if self._pending else data
        cut = buffer.rfind(_EVENT_END)
        if cut < 0:
            self._pending = buffer
            return b""
        complete, self._pending = buffer[: cut + 2], buffer[cut + 2 :]
        if b'"usage"' not in complete:
            self.chunks += complete.count(b"data:")
            return complete
        kept = []
        for event in complete.split(_EVENT_END)[:-1]:
            if b'"usage"' in event and self._is_usage_only(event):
                continue
            self.chunks += 1
            kept.append(event + _EVENT_END)
        return b"".join(kept)

    def flush(self) -> bytes:
        """Whatever trailing bytes the upstream sent without an event terminator."""
        rest, self._pending = self._pending, b""
        return rest

    def _is_usage_only(self, event: bytes) -> bool:
        """Record the usage this event carries; True if it is the chunk to hide."""
        for line in event.split(b"\n"):
            if not line.startswith(b"data:"):
                continue
            try:
                chunk = orjson.loads(line[5:])
            except orjson.JSONDecodeError:
                return False
            if not isinstance(chunk, dict):
                return False
            usage = chunk.get("usage")
            if isinstance(usage, dict):
                self.usage = usage
                return self.strip_usage_chunk and not chunk.get("choices")
            return False
        return False
