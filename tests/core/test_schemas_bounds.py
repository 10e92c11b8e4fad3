"""Value bounds: a record the schema accepts fits every consumer and every ClickHouse column.

Issue 11, item 1: `"max_tokens": 1000000000000` made a request event whose
`estimate_tokens` no UInt32 column holds; the schema accepted it, the sink's
insert failed for good. The bounds (`tokenpools.schemas.bounds`) are checked
here on both paths that judge a record: the codec and its fast request decoder.
"""

from __future__ import annotations

import msgspec
import orjson
import pytest

from tests.helpers.core import ent, pool_config
from tokenpools.schemas import DecodeError, decode_as, encode
from tokenpools.schemas.codec import _decode_request, decode_requests
from tokenpools.schemas.config import Tier
from tokenpools.schemas.dims import Dims
from tokenpools.schemas.events import EngineSample, LimitUpdate, PoolConfigRecord, RequestEvent

GOOD = {
    "type": "request",
    "id": "r1",
    "time": 1_700_000_000.0,
    "pool": "p",
    "entitlement": "e",
    "phase": "admitted",
    "estimate_tokens": 100,
}

OUT_OF_BOUNDS = [
    ("estimate_tokens", 1_000_000_000_000),  # issue 11's max_tokens
    ("prompt_tokens", 2**32),
    ("completion_tokens", 2**40),
    ("queue_delay_ms", 1e39),  # above Float32
    ("ttft_ms", 3.5e38),
    ("latency_ms", 1e300),
    ("time", 1e17),  # ms of it overflow DateTime64(3)
    ("time", 9.3e15),
]


@pytest.mark.parametrize(("field", "value"), OUT_OF_BOUNDS, ids=lambda x: str(x))
def test_a_request_value_no_column_holds_is_refused_by_the_codec_and_the_fast_path(
    field: str, value: object
) -> None:
    raw = orjson.dumps({**GOOD, field: value})
    with pytest.raises(msgspec.ValidationError, match=field):
        _decode_request(raw)  # the fast path refuses it ...
    records, refused = decode_requests([raw])  # ... and so does the codec behind it
    assert records == [] and [i for i, _ in refused] == [0]
    with pytest.raises(DecodeError, match=field):
        decode_as(raw, RequestEvent)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("estimate_tokens", 2**32 - 1),
        ("queue_delay_ms", 3.4e38),
        ("time", 4_102_444_800.0),
    ],
)
def test_values_at_the_bound_are_accepted_on_both_paths(field: str, value: object) -> None:
    raw = orjson.dumps({**GOOD, field: value})
    assert getattr(_decode_request(raw), field) == value  # the fast path takes it
    assert getattr(decode_as(raw, RequestEvent), field) == value


def test_a_batch_with_one_out_of_bounds_record_is_judged_record_by_record() -> None:
    values = [orjson.dumps({**GOOD, "id": str(i)}) for i in range(5)]
    values[3] = orjson.dumps({**GOOD, "estimate_tokens": 10**12})
    good, refused = decode_requests(values)
    assert [i for i, _ in refused] == [3] and len(good) == 4


@pytest.mark.parametrize(
    "make",
    [
        lambda: RequestEvent(**{**GOOD, "ttft_ms": float("inf")}),
        lambda: RequestEvent(**{**GOOD, "time": float("nan")}),
        lambda: EngineSample(time=1.0, pool="p", backend="b", kv_capacity_tokens=float("inf")),
        lambda: EngineSample(time=1e17, pool="p", backend="b"),
        lambda: EngineSample(time=1.0, pool="p", backend="b", running=1e39),
        lambda: LimitUpdate(
            pool="p",
            entitlement="e",
            tier=Tier.SPOT,
            epoch=1,
            issued_at=1.0,
            expires_at=float("inf"),
            limits=Dims(),
        ),
        lambda: Dims(tps=float("inf")),
    ],
    ids=[
        "inf ms",
        "nan time",
        "inf kv",
        "engine time 1e17",
        "running over Float32",
        "inf expiry",
        "inf dims",
    ],
)
def test_non_finite_and_out_of_range_values_are_refused_when_a_record_is_built(make) -> None:
    with pytest.raises(ValueError):
        make()


def test_a_pool_config_record_gets_the_cross_object_checks_of_config_validate() -> None:
    """Issue 11, item 4: the topic's records are judged like the YAML file."""
    good = pool_config(ent("a", Tier.GUARANTEED, guarantee=(100, 0, 0)))
    raw = orjson.loads(encode(good))
    cases = {
        "over capacity": {
            **raw,
            "entitlements": [{**raw["entitlements"][0], "guarantee": {"tps": 10**6}}],
        },
        "duplicate names": {**raw, "entitlements": raw["entitlements"] * 2},
        "another pool's entitlement": {
            **raw,
            "entitlements": [{**raw["entitlements"][0], "pool": "other"}],
        },
        "zero replicas": {**raw, "pool": {**raw["pool"], "replicas": 0}},
    }
    assert decode_as(orjson.dumps(raw), PoolConfigRecord) == good
    for name, obj in cases.items():
        with pytest.raises(DecodeError) as caught:
            decode_as(orjson.dumps(obj), PoolConfigRecord)
        assert caught.value.args[0], name
