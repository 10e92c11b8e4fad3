"""The cost a request is charged before it runs: chars/4 for text, exact for token ids."""

from __future__ import annotations

import pytest

from connectors.sidecar.estimate import MAX_CHOICES, OutOfBounds, estimate_request


def test_chat_text_is_four_characters_a_token_plus_a_template_overhead_per_message() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "x" * 40},
            {"role": "user", "content": [{"type": "text", "text": "y" * 20}]},
        ],
        "max_tokens": 100,
    }
    e = estimate_request(body, chat=True, expected_output_tokens=7)
    assert (e.prompt_tokens, e.output_tokens, e.total) == (15 + 8, 100, 123)


def test_output_is_max_completion_tokens_else_max_tokens_else_the_entitlements_default() -> None:
    assert (
        estimate_request(
            {"prompt": "abcd", "max_completion_tokens": 9, "max_tokens": 50},
            chat=False,
            expected_output_tokens=7,
        ).output_tokens
        == 9
    )
    assert (
        estimate_request(
            {"prompt": "abcd", "max_tokens": 50}, chat=False, expected_output_tokens=7
        ).output_tokens
        == 50
    )
    assert (
        estimate_request({"prompt": "abcd"}, chat=False, expected_output_tokens=7).output_tokens
        == 7
    )
    assert (
        estimate_request(
            {"prompt": "abcd", "max_tokens": "lots"}, chat=False, expected_output_tokens=7
        ).output_tokens
        == 7
    )


def test_token_id_prompts_are_counted_exactly_and_n_choices_multiply_the_output() -> None:
    e = estimate_request(
        {"prompt": [1, 2, 3, 4, 5], "max_tokens": 10, "n": 3}, chat=False, expected_output_tokens=7
    )
    assert (e.prompt_tokens, e.output_tokens) == (5, 30)


def test_a_request_without_text_still_costs_a_token() -> None:
    assert estimate_request({}, chat=True, expected_output_tokens=1).prompt_tokens == 1


@pytest.mark.parametrize("n", [0, -3, MAX_CHOICES + 1, 10**9, 2.5, "4", True])
def test_n_outside_one_to_max_choices_is_refused_naming_n(n: object) -> None:
    """A billion choices of 4 tokens each stayed under the UInt32 bound and was admitted."""
    with pytest.raises(OutOfBounds) as refused:
        estimate_request({"prompt": "abcd", "max_tokens": 4, "n": n}, False, 7)
    assert refused.value.param == "n"


def test_each_of_n_choices_is_charged_its_max_tokens() -> None:
    body = {"prompt": "abcd", "max_tokens": 5, "n": MAX_CHOICES}
    assert estimate_request(body, False, 7).output_tokens == 5 * MAX_CHOICES
    assert estimate_request({"prompt": "abcd", "n": None}, False, 7).output_tokens == 7
