"""The simulator's stand-in for a tokenizer: words and punctuation marks count as tokens.

It only has to be deterministic and plausible (about one token per short word),
and deliberately differs from the sidecar's chars/4 estimate so that estimate
reconciliation is exercised against "real" usage.
"""

from __future__ import annotations

import re
from typing import Any

_TOKEN = re.compile(r"\w+|[^\w\s]")
MESSAGE_OVERHEAD_TOKENS = 4  # role markers and separators of a chat template
_WORDS = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit")


def count_text(text: str) -> int:
    return len(_TOKEN.findall(text))


def count_prompt(prompt: Any) -> int:
    """Tokens of a completions `prompt`: a string, a list of strings, or token ids."""
    if isinstance(prompt, str):
        return count_text(prompt)
    if isinstance(prompt, list):
        if all(isinstance(p, int) for p in prompt):
            return len(prompt)
        return sum(count_prompt(p) for p in prompt)
    return 0


def count_messages(messages: Any) -> int:
    """Tokens of chat `messages` after a chat template: content plus a per-message overhead."""
    if not isinstance(messages, list):
        return 0
    total = 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        total += MESSAGE_OVERHEAD_TOKENS
        content = message.get("content")
        if isinstance(content, str):
            total += count_text(content)
        elif isinstance(content, list):
            total += sum(
                count_text(part.get("text", ""))
                for part in content
                if isinstance(part, dict) and isinstance(part.get("text"), str)
            )
    return total


def generated_text(start: int, stop: int) -> str:
    """The text of output tokens `start..stop-1`: one word per token, deterministic."""
    return "".join(" " + _WORDS[i % len(_WORDS)] for i in range(start, stop))
