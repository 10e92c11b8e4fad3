"""What a request will cost before it runs: prompt tokens plus expected output.

No tokenizer is loaded (it would cost memory and milliseconds per request and
tie the sidecar to a model): text is estimated at 4 characters per token, the
rule of thumb for English BPE vocabularies, plus 4 tokens per chat message for
its template; token-id prompts are counted exactly. The error is settled when
the response reports its real usage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tokenpools.schemas.bounds import UINT32_MAX

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 4


@dataclass(frozen=True, slots=True)
class Estimate:
    """Prompt and output tokens a request is charged on admission."""

    prompt_tokens: int
    output_tokens: int

    @property
    def total(self) -> int:
        """Charged to the token bucket (tps) and reserved as KV: the context at its longest."""
        return self.prompt_tokens + self.output_tokens


def _text_tokens(chars: int) -> int:
    return -(-chars // CHARS_PER_TOKEN)


def _prompt_tokens(prompt: Any) -> int:
    if isinstance(prompt, str):
        return _text_tokens(len(prompt))
    if isinstance(prompt, list):
        if prompt and all(isinstance(p, int) for p in prompt):
            return len(prompt)
        return sum(_prompt_tokens(p) for p in prompt)
    return 0


def _message_tokens(messages: Any) -> int:
    if not isinstance(messages, list):
        return 0
    chars = 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    chars += len(part["text"])
    return _text_tokens(chars) + MESSAGE_OVERHEAD_TOKENS * len(messages)


class OutOfBounds(ValueError):
    """A request whose token count no request event can carry (`tokenpools.schemas.bounds`)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


def estimate_request(body: dict[str, Any], chat: bool, expected_output_tokens: int) -> Estimate:
    """Estimate a chat (`messages`) or completions (`prompt`) request body.

    Raises `OutOfBounds` when the tokens asked for exceed what a request event
    holds (UInt32): such a request is refused with a 400 before it is charged,
    instead of producing an event every consumer refuses (issue 11).
    """
    prompt = _message_tokens(body.get("messages")) if chat else _prompt_tokens(body.get("prompt"))
    param = "max_completion_tokens" if body.get("max_completion_tokens") else "max_tokens"
    output = body.get(param)
    if not isinstance(output, int) or isinstance(output, bool) or output < 1:
        output = expected_output_tokens
    n = body.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n > 1:
        output *= n  # n choices each generate up to max_tokens
    estimate = Estimate(max(1, prompt), output)
    if estimate.total > UINT32_MAX:
        raise OutOfBounds(
            param,
            f"{param} is too large: the request would reserve {estimate.total} tokens, "
            f"over the limit of {UINT32_MAX} per request.",
        )
    return estimate
