"""A request body, parsed and bounded before anything walks it.

orjson accepts 1,024 levels of nesting, while the estimate recurses into
prompts and `orjson.dumps` stops at 254: a deep enough body used to end as a
500 with a traceback as long as the body. OpenAI's request bodies nest five
levels at most, so anything deeper than the configured bound is refused here,
as a 400, before any recursive code sees it.
"""

from __future__ import annotations

from typing import Any

import orjson


def parse_object(raw: bytes, max_depth: int) -> dict[str, Any] | str:
    """The body as a JSON object, or the problem with it (a message for the client)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        return "We could not parse the JSON body of your request: expected a JSON object."
    # each level opens with a `[` or `{`: a body with no more of them cannot be too deep
    # (a count in C, against a walk of every value in Python for every request)
    if raw.count(b"[") + raw.count(b"{") > max_depth and nested_deeper(body, max_depth):
        return f"The JSON body of your request is nested deeper than {max_depth} levels."
    return body


def nested_deeper(value: list[Any] | dict[str, Any], limit: int) -> bool:
    """Whether `value` has more than `limit` levels of arrays and objects (iterative)."""
    stack: list[tuple[list[Any] | dict[str, Any], int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, (list, dict)):
                if depth >= limit:
                    return True
                stack.append((child, depth + 1))
    return False
