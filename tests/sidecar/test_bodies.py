"""The body bound: a body is refused for its depth exactly when it is deeper than the bound,
whether or not the cheap bracket count lets the walk be skipped."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import example, given
from hypothesis import strategies as st

from connectors.sidecar.bodies import nested_deeper, parse_object

_JSON = st.recursive(
    st.none() | st.integers(-(2**63), 2**63 - 1) | st.text(alphabet="[]{}ab", max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner),
    max_leaves=12,
)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


@given(st.dictionaries(st.text(max_size=2), _JSON, max_size=3), st.integers(1, 5))
@example({"a": [[]]}, 3)  # exactly at the bound: accepted
@example({"a": [[[[]]]]}, 3)
@example({"[[[[": "{{{{"}, 1)  # brackets in strings are counted, never walked as levels
def test_a_body_is_refused_exactly_when_it_nests_deeper_than_the_bound(
    body: dict[str, Any], bound: int
) -> None:
    parsed = parse_object(orjson.dumps(body), bound)
    too_deep = _depth(body) > bound
    assert nested_deeper(body, bound) is too_deep
    assert isinstance(parsed, str) is too_deep
    if not too_deep:
        assert parsed == body
