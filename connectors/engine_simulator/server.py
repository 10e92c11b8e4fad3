"""The simulator's HTTP face: vLLM's OpenAI-compatible endpoints and `/metrics`.

Response bodies, SSE chunks (`stream_options.include_usage` adds a final
usage-only chunk with empty `choices`) and error shapes follow vLLM's server.
A request whose client disconnects is aborted in the engine, as vLLM does.
A request's `priority` field orders it when the engine runs
`--scheduling-policy priority` (lower first); under `fcfs` a non-zero
priority is refused with 400, as vLLM refuses it.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from connectors.engine_simulator.metrics import EngineMetrics
from connectors.engine_simulator.runner import EngineRunner, RequestProgress
from connectors.engine_simulator.tokenizer import count_messages, count_prompt, generated_text
from tokenpools.engine_model import SchedulingPolicy

_JSON = "application/json"


@dataclass(frozen=True)
class ServedModel:
    """What the simulator pretends to serve, and how long its answers are."""

    name: str = "sim-model"
    max_model_len: int = 32768
    default_output_tokens: int = 128  # output length when a request sets no max_tokens ("EOS")


class ErrorType(StrEnum):
    """vLLM's error `type`s (the name of the exception it raised)."""

    BAD_REQUEST = "BadRequestError"
    NOT_FOUND = "NotFoundError"


class FinishReason(StrEnum):
    """Why generation ended: the simulator's "EOS", or the request's `max_tokens`."""

    STOP = "stop"
    LENGTH = "length"


def _error_body(status: int, message: str, error_type: ErrorType) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": None, "code": status}}


def error_response(status: int, message: str, error_type: ErrorType) -> web.Response:
    """vLLM's error body (OpenAI's nested shape)."""
    body = _error_body(status, message, error_type)
    return web.Response(status=status, body=orjson.dumps(body), content_type=_JSON)


class EngineSimulatorServer:
    """Routes of one simulated vLLM replica."""

    def __init__(self, runner: EngineRunner, served: ServedModel, metrics: EngineMetrics) -> None:
        self.runner = runner
        self.served = served
        self.metrics = metrics
        self._ids = itertools.count(1)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.prometheus)
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)
        return app

    async def _start(self, _app: web.Application) -> None:
        self.runner.start()

    async def _stop(self, _app: web.Application) -> None:
        await self.runner.stop()

    async def health(self, _request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def models(self, _request: web.Request) -> web.Response:
        card = {
            "id": self.served.name,
            "object": "model",
            "created": int(time.time()),
            "owned_by": "tokenpools-engine-simulator",
            "root": self.served.name,
            "max_model_len": self.served.max_model_len,
        }
        return web.Response(
            body=orjson.dumps({"object": "list", "data": [card]}), content_type=_JSON
        )

    async def prometheus(self, _request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, chat=True)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, chat=False)

    async def _serve(self, request: web.Request, chat: bool) -> web.StreamResponse:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            return error_response(400, f"invalid JSON body: {exc}", ErrorType.BAD_REQUEST)
        if not isinstance(body, dict):
            return error_response(400, "the body must be a JSON object", ErrorType.BAD_REQUEST)
        model = body.get("model", self.served.name)
        if model != self.served.name:
            return error_response(404, f"The model `{model}` does not exist.", ErrorType.NOT_FOUND)
        prompt_tokens = (
            count_messages(body.get("messages")) if chat else count_prompt(body.get("prompt"))
        )
        if prompt_tokens <= 0:
            field = "messages" if chat else "prompt"
            return error_response(
                400, f"{field} is required and must not be empty", ErrorType.BAD_REQUEST
            )
        requested = body.get("max_completion_tokens") or body.get("max_tokens")
        if requested is not None and (not isinstance(requested, int) or requested < 1):
            return error_response(
                400, "max_tokens must be a positive integer", ErrorType.BAD_REQUEST
            )
        max_tokens = requested or self.served.default_output_tokens
        if prompt_tokens + max_tokens > self.served.max_model_len:
            return error_response(
                400,
                f"This model's maximum context length is {self.served.max_model_len} tokens. "
                f"However, you requested {prompt_tokens + max_tokens} tokens "
                f"({prompt_tokens} in the messages, {max_tokens} in the completion).",
                ErrorType.BAD_REQUEST,
            )
        priority = body.get("priority", 0)
        if not isinstance(priority, int) or isinstance(priority, bool):
            return error_response(400, "priority must be an integer", ErrorType.BAD_REQUEST)
        if priority != 0 and self.runner.model.params.scheduling_policy is not (
            SchedulingPolicy.PRIORITY
        ):  # vLLM refuses it the same way
            return error_response(
                400,
                f"Got priority {priority} but Priority scheduling is not enabled.",
                ErrorType.BAD_REQUEST,
            )
        # The stand-in's own extension: where this answer's "EOS" falls, so a replayed or
        # generated request produces its recorded length under a larger max_tokens.
        eos = body.get("sim_output_tokens")
        if isinstance(eos, int) and 0 < eos < max_tokens:
            max_tokens, requested = eos, None
        finish_reason = FinishReason.LENGTH if requested else FinishReason.STOP
        prefix = "chatcmpl" if chat else "cmpl"
        request_id = f"{prefix}-sim{next(self._ids)}"
        progress = self.runner.submit(request_id, prompt_tokens, max_tokens, priority)
        try:
            if body.get("stream"):
                options = body.get("stream_options") or {}
                return await self._stream(
                    request, progress, chat, finish_reason, bool(options.get("include_usage"))
                )
            return await self._complete(progress, chat, finish_reason)
        finally:
            self.runner.cancel(request_id)  # a no-op once finished; aborts on disconnect

    async def _complete(
        self, progress: RequestProgress, chat: bool, finish: FinishReason
    ) -> web.Response:
        while not progress.done:
            await progress.changed.wait()
            progress.changed.clear()
        if progress.error is not None:
            return error_response(400, progress.error, ErrorType.BAD_REQUEST)
        self._observe(progress)
        text = generated_text(0, progress.tokens)
        if chat:
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish,
                "stop_reason": None,
            }
        else:
            choice = {
                "index": 0,
                "text": text,
                "logprobs": None,
                "finish_reason": finish,
                "stop_reason": None,
            }
        body = {
            "id": progress.request_id,
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": self.served.name,
            "choices": [choice],
            "usage": _usage(progress),
        }
        return web.Response(body=orjson.dumps(body), content_type=_JSON)

    async def _stream(
        self,
        request: web.Request,
        progress: RequestProgress,
        chat: bool,
        finish: FinishReason,
        include_usage: bool,
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        head = {
            "id": progress.request_id,
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()),
            "model": self.served.name,
        }

        def chunk(text: str, finish_reason: FinishReason | None, first: bool = False) -> bytes:
            if chat:
                delta = {"role": "assistant", "content": text} if first else {"content": text}
                choice: dict[str, Any] = {
                    "index": 0,
                    "delta": delta,
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            else:
                choice = {
                    "index": 0,
                    "text": text,
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            return b"data: " + orjson.dumps({**head, "choices": [choice]}) + b"\n\n"

        if chat:
            await response.write(chunk("", None, first=True))
        sent = 0
        while True:
            await progress.changed.wait()
            progress.changed.clear()
            if progress.error is not None:
                err = _error_body(400, progress.error, ErrorType.BAD_REQUEST)
                await response.write(b"data: " + orjson.dumps(err) + b"\n\n")
                break
            if progress.tokens > sent:
                last = progress.finished_at is not None
                await response.write(
                    chunk(generated_text(sent, progress.tokens), finish if last else None)
                )
                sent = progress.tokens
            if progress.finished_at is not None:
                self._observe(progress)
                if include_usage:
                    usage: dict[str, Any] = {**head, "choices": [], "usage": _usage(progress)}
                    await response.write(b"data: " + orjson.dumps(usage) + b"\n\n")
                break
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    def _observe(self, progress: RequestProgress) -> None:
        if progress.finished_at is not None:
            self.metrics.observe(
                progress.submitted_at, progress.first_token_at, progress.finished_at
            )


def _usage(progress: RequestProgress) -> dict[str, int]:
    return {
        "prompt_tokens": progress.prompt_tokens,
        "total_tokens": progress.prompt_tokens + progress.tokens,
        "completion_tokens": progress.tokens,
    }


async def start_engine_simulator(
    runner: EngineRunner,
    served: ServedModel,
    host: str = "127.0.0.1",
    port: int = 0,
    legacy_metric_names: bool = False,
) -> tuple[web.AppRunner, str]:
    """Serve a simulator in the running loop; returns the runner (to clean up) and its base URL."""
    metrics = EngineMetrics(runner.model, served.name, legacy_metric_names)
    server = EngineSimulatorServer(runner, served, metrics)
    app_runner = web.AppRunner(server.app(), handler_cancellation=True, access_log=None)
    await app_runner.setup()
    site = web.TCPSite(app_runner, host, port)
    await site.start()
    bound = app_runner.addresses[0][1]  # (host, port, ...) of the socket bound: port 0 picks one
    return app_runner, f"http://{host}:{bound}"
