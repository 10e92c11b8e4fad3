"""Drive the pure `EngineModel` in (optionally accelerated) real time.

The model has no clock; this runner gives it one: simulated time is wall
time since start multiplied by `speed`, and a background task completes each
planned step when its time comes. HTTP handlers wait on per-request
`RequestProgress` objects the runner updates from the model's events.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tokenpools.engine_model import EngineEvent, EngineEventKind, EngineModel, EngineParams

# Parameters of `--fast` mode: steps take (almost) no time and nothing queues, so a
# benchmark measures HTTP plumbing rather than the model.
FAST_PARAMS = EngineParams(
    max_num_seqs=4096,
    num_gpu_blocks=1 << 20,
    block_size=16,
    max_num_batched_tokens=1 << 22,
    step_base_s=1e-6,
    step_per_seq_s=0.0,
    prefill_per_token_s=0.0,
)


@dataclass
class RequestProgress:
    """What one request has received from the engine so far."""

    request_id: str
    submitted_at: float
    prompt_tokens: int = 0
    tokens: int = 0
    first_token_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def done(self) -> bool:
        return self.finished_at is not None or self.error is not None


class EngineRunner:
    """One simulated engine replica running in this process's event loop."""

    def __init__(
        self,
        model: EngineModel,
        speed: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.model = model
        self.speed = speed
        self._clock = clock
        self._t0 = clock()
        self._progress: dict[str, RequestProgress] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def now(self) -> float:
        """Simulated seconds since the runner started."""
        return (self._clock() - self._t0) * self.speed

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="engine-steps")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def submit(
        self, request_id: str, prompt_tokens: int, max_output_tokens: int, priority: int = 0
    ) -> RequestProgress:
        """Queue a request on the engine; the returned progress fills in as steps complete.

        `priority` orders it under `--scheduling-policy priority` (lower runs first).
        """
        now = self.now()
        progress = RequestProgress(request_id, now, prompt_tokens)
        self._progress[request_id] = progress
        self._dispatch(
            self.model.submit(request_id, prompt_tokens, max_output_tokens, now, priority)
        )
        self._wake.set()
        return progress

    def cancel(self, request_id: str) -> None:
        """The client went away: free the request's slot and KV blocks now (vLLM aborts too)."""
        if self._progress.pop(request_id, None) is not None:
            self.model.cancel(request_id)

    async def _run(self) -> None:
        model = self.model
        while True:
            due = model.next_step_time()
            if due is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            delay = (due - self.now()) / self.speed
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                await asyncio.sleep(0)  # let handlers run between back-to-back steps
            self._dispatch(model.step(max(due, self.now())))

    def _dispatch(self, events: list[EngineEvent]) -> None:
        for event in events:
            progress = self._progress.get(event.request_id)
            if progress is None:
                continue
            kind = event.kind
            if kind is EngineEventKind.TOKEN or kind is EngineEventKind.FIRST_TOKEN:
                progress.tokens = event.tokens
                if progress.first_token_at is None:
                    progress.first_token_at = event.time
            elif kind is EngineEventKind.FINISHED:
                progress.tokens = event.tokens
                progress.prompt_tokens = event.prompt_tokens
                progress.finished_at = event.time
                del self._progress[event.request_id]
            elif kind is EngineEventKind.ABORTED:
                progress.error = event.reason
                del self._progress[event.request_id]
            else:  # preempted: it will re-prefill; nothing for the client to see
                continue
            progress.changed.set()
