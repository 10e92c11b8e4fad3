"""OpenAI's error responses: `{"error": {"message", "type", "param", "code"}}`."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

import orjson

from connectors.sidecar.wire import Reply


class ErrorType(StrEnum):
    """The `type` of an error body; the OpenAI clients pick their exception by status."""

    INVALID_REQUEST = "invalid_request_error"
    SERVER = "server_error"
    REQUESTS = "requests"  # 429: the concurrency limit (OpenAI's request-rate limit)
    TOKENS = "tokens"  # 429: a token limit (bucket or KV)


class ErrorCode(StrEnum):
    """The `code` of an error body: what went wrong, for programs to branch on."""

    INVALID_API_KEY = "invalid_api_key"
    INVALID_JSON = "invalid_json"
    INVALID_VALUE = "invalid_value"  # a parameter out of its range
    UNKNOWN_URL = "unknown_url"  # OpenAI's code for a path it does not serve
    METHOD_NOT_ALLOWED = "method_not_allowed"
    BAD_HTTP_REQUEST = "bad_http_request"  # the request line or head could not be parsed
    INTERNAL_ERROR = "internal_error"
    REQUEST_TOO_LARGE = "request_too_large"
    RATE_LIMIT_EXCEEDED = "rate_limit_exceeded"
    BACKEND_UNAVAILABLE = "backend_unavailable"  # every backend is cooling down
    BACKEND_UNREACHABLE = "backend_unreachable"  # connections refused or timed out
    BACKEND_TIMEOUT = "backend_timeout"  # the backend fell silent mid-answer
    BACKEND_ERROR = "backend_error"  # the backend broke the connection or the protocol
    PREEMPTED = "preempted"  # a borrower's request aborted to give room back (docs/SIDECAR.md)


def openai_error(
    status: int,
    message: str,
    error_type: ErrorType,
    code: ErrorCode | None = None,
    headers: Mapping[str, str] | None = None,
    param: str | None = None,
) -> Reply:
    """An error body the official OpenAI clients parse into the matching exception."""
    body = {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    return Reply(status, orjson.dumps(body), "application/json", headers)


PATH_SHOWN = 200  # characters of a request path quoted back in a 404/405


def unknown_url(method: str, path: str) -> Reply:
    """404 for a path the sidecar does not serve (the path quoted, cut short)."""
    message = f"Unknown request URL: {method} {path[:PATH_SHOWN]}."
    return openai_error(404, message, ErrorType.INVALID_REQUEST, ErrorCode.UNKNOWN_URL)


def method_not_allowed(
    method: str, path: str, allowed: str, headers: Mapping[str, str] | None = None
) -> Reply:
    """405 naming the methods the path allows (`headers` carry `Allow`)."""
    message = f"Method {method} is not allowed for {path[:PATH_SHOWN]}; allowed: {allowed}."
    return openai_error(
        405, message, ErrorType.INVALID_REQUEST, ErrorCode.METHOD_NOT_ALLOWED, headers=headers
    )


def unauthorized() -> Reply:
    """401 for a missing or unknown inference key."""
    return openai_error(
        401,
        "Incorrect API key provided. Send 'Authorization: Bearer <inference key>'.",
        ErrorType.INVALID_REQUEST,
        ErrorCode.INVALID_API_KEY,
    )
