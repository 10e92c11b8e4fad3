"""OpenAI's error responses: `{"error": {"message", "type", "param", "code"}}`."""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from aiohttp import web


def openai_error(
    status: int,
    message: str,
    error_type: str,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """An error body the official OpenAI clients parse into the matching exception."""
    body = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )
