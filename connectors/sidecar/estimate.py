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

from tokenpools.output_length import reservation_output_tokens
from tokenpools.schemas.bounds import UINT32_MAX

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 4


@dataclass(frozen=True, slots=True)
class Estimate:
    """Prompt and output tokens a request is charged on admission.

    `max_output_tokens` is what the client allows (max_tokens × n; None: no cap): a
    reservation made on a learned prediction below it may grow up to it while streaming.
    """

    prompt_tokens: int
    output_tokens: int
    max_output_tokens: int | None = None

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


MAX_CHOICES = 128
"""The most `n` a request may ask for: OpenAI's API bound. Each choice is charged and run
in full, so an unbounded `n` would let one request reserve a whole pool's KV."""


def _choices(n: object) -> int:
    """`n` as sent (absent or null: 1); outside 1..MAX_CHOICES is refused, naming `n`."""
    if n is None:
        return 1
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_CHOICES:
        raise OutOfBounds("n", f"n must be an integer from 1 to {MAX_CHOICES}; got {n!r}.")
    return n


def estimate_request(
    body: dict[str, Any], chat: bool, expected_output_tokens: int, predicted: int | None = None
) -> Estimate:
    """Estimate a chat (`messages`) or completions (`prompt`) request body.

    Output: `min(max_tokens, predicted)` when the controller published a learned
    prediction of the entitlement's output length (`tokenpools.output_length`),
    else `max_tokens`, else `expected_output_tokens`.

    Raises `OutOfBounds` when `n` is outside 1..MAX_CHOICES or the tokens asked
    for exceed what a request event holds (UInt32): such a request is refused
    with a 400 before it is charged, instead of producing an event every
    consumer refuses (issue 11).
    """
    prompt = _message_tokens(body.get("messages")) if chat else _prompt_tokens(body.get("prompt"))
    param = "max_completion_tokens" if body.get("max_completion_tokens") else "max_tokens"
    requested = body.get(param)
    if not isinstance(requested, int) or isinstance(requested, bool) or requested < 1:
        requested = None
    choices = _choices(body.get("n", 1))
    cap = None if requested is None else requested * choices  # n choices each up to max_tokens
    asked = expected_output_tokens * choices if cap is None else cap
    if max(1, prompt) + asked > UINT32_MAX:  # what the client asked for, whatever is reserved
        raise OutOfBounds(
            param,
            f"{param} is too large: the request would reserve {max(1, prompt) + asked} tokens, "
            f"over the limit of {UINT32_MAX} per request.",
        )
    output = asked if predicted is None else reservation_output_tokens(cap, predicted)
    return Estimate(max(1, prompt), max(1, output), cap)
