"""A tick's records written from columns are exactly what the codec writes for the models."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.helpers.core import arrivals, ent, pool_config
from tokenpools.controller import INSTANCE_EVEN_SHARE, PoolController, TickResult
from tokenpools.schemas import DecodeError, columnar, decode, decode_as, encode
from tokenpools.schemas.columnar import LimitColumns, PoolStateColumns
from tokenpools.schemas.config import Tier
from tokenpools.schemas.dims import Dims
from tokenpools.schemas.events import (
    STATE_COLUMNS,
    EntitlementState,
    LimitUpdate,
    Phase,
    PoolState,
)
from tokenpools.topics import limit_key

names = st.text(max_size=12)  # quotes, backslashes, newlines, non-ASCII: escaping must match
tiers = st.sampled_from([t.value for t in Tier])
values = st.one_of(
    st.floats(min_value=0, max_value=1e300, allow_nan=False, allow_infinity=False),
    st.integers(min_value=0, max_value=10**6).map(float),  # 3.0 must stay "3.0"
    st.sampled_from([0.0, 1e-300, 0.1, 1 / 3, 2.5e15, 1e16]),
)
times = st.floats(min_value=0, max_value=4e9, allow_nan=False)


def rows_of(n: int, width: int) -> st.SearchStrategy[np.ndarray]:
    return st.lists(values, min_size=n * width, max_size=n * width).map(
        lambda xs: np.array(xs, dtype=float).reshape(n, width)
    )


@st.composite
def limit_columns(draw: st.DrawFn) -> LimitColumns:
    n = draw(st.integers(min_value=0, max_value=6))
    return LimitColumns(
        pool=draw(names),
        epoch=draw(st.integers(min_value=0, max_value=2**53)),
        issued_at=draw(times),
        expires_at=draw(times),
        entitlements=draw(st.lists(names, min_size=n, max_size=n)),
        tiers=draw(st.lists(tiers, min_size=n, max_size=n)),
        instances=draw(st.lists(names, min_size=n, max_size=n)),
        limits=draw(rows_of(n, 3)),
        predicted_output_tokens=draw(
            st.none()
            | st.lists(
                st.none() | st.integers(min_value=1, max_value=2**40), min_size=n, max_size=n
            )
        ),
    )


@st.composite
def state_columns(draw: st.DrawFn) -> PoolStateColumns:
    n = draw(st.integers(min_value=0, max_value=6))
    return PoolStateColumns(
        pool=draw(names),
        time=draw(times),
        epoch=draw(st.integers(min_value=0, max_value=2**53)),
        replicas=draw(st.integers(min_value=0, max_value=1000)),
        capacity=draw(rows_of(1, 3)).reshape(3),
        entitlements=draw(st.lists(names, min_size=n, max_size=n)),
        tiers=draw(st.lists(tiers, min_size=n, max_size=n)),
        demand=draw(rows_of(n, 3)),
        allocation=draw(rows_of(n, 3)),
        limit=draw(rows_of(n, 3)),
        served=draw(rows_of(n, 3)),
        debt=draw(rows_of(n, 1)).reshape(n),
        priority=draw(rows_of(n, 1)).reshape(n),
    )


def dims(row: np.ndarray) -> Dims:
    tps, kv, conc = row.tolist()
    return Dims(tps=tps, kv=kv, conc=conc)


def limit_models(cols: LimitColumns) -> list[LimitUpdate]:
    """The records the columns stand for, built field by field through validation."""
    return [
        LimitUpdate(
            pool=cols.pool,
            entitlement=cols.entitlements[i],
            tier=Tier(cols.tiers[i]),
            instance=cols.instances[i],
            epoch=cols.epoch,
            issued_at=cols.issued_at,
            expires_at=cols.expires_at,
            limits=dims(cols.limits[i]),
            predicted_output_tokens=(
                None if cols.predicted_output_tokens is None else cols.predicted_output_tokens[i]
            ),
        )
        for i in range(len(cols))
    ]


def state_model(cols: PoolStateColumns) -> PoolState:
    return PoolState(
        pool=cols.pool,
        time=cols.time,
        epoch=cols.epoch,
        replicas=cols.replicas,
        capacity=dims(cols.capacity),
        entitlements=[
            EntitlementState(
                entitlement=name,
                tier=Tier(cols.tiers[i]),
                demand=dims(cols.demand[i]),
                allocation=dims(cols.allocation[i]),
                limit=dims(cols.limit[i]),
                served=dims(cols.served[i]),
                debt=float(cols.debt[i]),
                priority=float(cols.priority[i]),
            )
            for i, name in enumerate(cols.entitlements)
        ],
    )


def assert_same_record(fast: bytes, model: LimitUpdate | PoolState) -> None:
    reference = encode(model)
    assert orjson.loads(fast) == orjson.loads(reference)  # same fields, same values
    assert decode(fast) == model == decode(reference)
    assert fast == reference  # and, as written today, the very same bytes


@settings(max_examples=200, deadline=None)
@given(limit_columns())
@example(  # a record is one `%` template with the pool baked in: "%" in names must stay literal
    LimitColumns(
        "50%b %s",
        7,
        1.5,
        11.5,
        ["a%b", "%%"],
        ["spot", "guaranteed"],
        ["", "i%d"],
        np.array([[1.0, 2.5, 3.0], [0.0, 1e16, 1 / 3]]),
        predicted_output_tokens=[None, 12],
    )
)
def test_limit_records_from_columns_are_what_the_codec_writes(cols: LimitColumns) -> None:
    encoded = cols.encoded()
    models = limit_models(cols)
    assert len(encoded) == len(models)
    for fast, model in zip(encoded, models, strict=True):
        assert_same_record(fast, model)
    assert cols.models() == models


@settings(max_examples=200, deadline=None)
@given(state_columns())
def test_a_state_snapshot_from_columns_is_what_the_codec_writes(cols: PoolStateColumns) -> None:
    model = state_model(cols)
    assert_same_record(cols.encoded(), model)
    assert cols.model() == model


def split_controller() -> PoolController:
    """Three tenants; gold and spot reach the pool through three sidecars with uneven demand."""
    ctl = PoolController(
        pool_config(
            ent("gold", Tier.GUARANTEED, guarantee=(300, 3000, 3)),
            ent("silver", Tier.ELASTIC, burst=(500, None, 5), weight=2),
            ent("spot", Tier.SPOT),
        )
    )
    for inst, gap in (("a", 0.1), ("b", 0.3), ("c", 0.7)):
        ctl.observe_requests(
            arrivals("gold", 0.0, int(3 / gap), gap, Phase.ADMITTED, instance=inst)
        )
    ctl.observe_requests(arrivals("silver", 0.0, 20, 0.15, Phase.REJECTED, estimate=400))
    ctl.observe_requests(arrivals("spot", 0.0, 30, 0.1, Phase.ADMITTED, instance="a"))
    ctl.observe_requests(arrivals("spot", 0.05, 5, 0.5, Phase.REJECTED, instance="b"))
    return ctl


def test_a_ticks_published_bytes_are_its_decisions_encoded_by_the_codec() -> None:
    ctl = split_controller()
    now = 3.0
    arrays = ctl.compute(now)
    result = TickResult(ctl.limit_columns(arrays), None, ctl.state_columns(arrays))
    names = ctl.entitlements
    tier = {"gold": Tier.GUARANTEED, "silver": Tier.ELASTIC, "spot": Tier.SPOT}
    limit = arrays.allocation.limit

    def update(name: str, instance: str, values: np.ndarray) -> LimitUpdate:
        return LimitUpdate(
            pool="p",
            entitlement=name,
            tier=tier[name],
            instance=instance,
            epoch=arrays.epoch,
            issued_at=now,
            expires_at=now + 10.0,
            limits=dims(np.maximum(values, 0.0)),
        )

    expected = [update(name, "", limit[i]) for i, name in enumerate(names)]
    shares = ctl.windows.instance_shares(now)
    assert sorted(len(pairs) for pairs in shares.values()) == [2, 3]  # spot and gold are split
    for row, pairs in shares.items():
        total = sum(tokens for _, tokens in pairs)
        for inst, tokens in pairs:
            share = (1 - INSTANCE_EVEN_SHARE) * (tokens / total) + INSTANCE_EVEN_SHARE / len(pairs)
            expected.append(update(names[row], "abc"[inst], limit[row] * share))

    published = result.encoded_limits()
    assert [key for key, _ in published] == [limit_key(u.entitlement, u.instance) for u in expected]
    for (_, value), model in zip(published, expected, strict=True):
        assert_same_record(value, model)
    assert result.limits == expected

    alloc = arrays.allocation
    state = PoolState(
        pool="p",
        time=now,
        epoch=arrays.epoch,
        replicas=1,
        capacity=dims(arrays.capacity),
        entitlements=[
            EntitlementState(
                entitlement=name,
                tier=tier[name],
                demand=dims(arrays.demand[i]),
                allocation=dims(alloc.allocation[i]),
                limit=dims(np.maximum(alloc.limit[i], 0.0)),
                served=dims(arrays.served[i]),
                debt=max(float(arrays.debt[i]), 0.0),
                priority=max(float(arrays.priority[i]), 0.0),
            )
            for i, name in enumerate(names)
        ],
    )
    assert_same_record(result.encoded_state(), state)
    assert result.state == state


def test_tick_gives_the_same_records_as_compute_then_columns() -> None:
    first, second = split_controller(), split_controller()
    result = first.tick(3.0)
    arrays = second.compute(3.0)
    again = TickResult(second.limit_columns(arrays), None, second.state_columns(arrays))
    assert result.encoded_limits() == again.encoded_limits()
    assert result.encoded_state() == again.encoded_state()


def test_taking_rows_keeps_each_rows_learned_output_length() -> None:
    """A tick that publishes only some limits must not shift predictions onto other rows."""
    cols = LimitColumns(
        "p",
        1,
        0.0,
        10.0,
        ["a", "b", "c"],
        ["spot"] * 3,
        [""] * 3,
        np.array([[1.0, 2.0, 1.0], [3.0, 4.0, 1.0], [5.0, 6.0, 1.0]]),
        predicted_output_tokens=[100, None, 300],
    )
    taken = cols.take(np.array([2, 1]))
    assert [m.entitlement for m in taken.models()] == ["c", "b"]
    assert [m.predicted_output_tokens for m in taken.models()] == [300, None]


def snapshot_of_three() -> PoolState:
    return split_controller().tick(3.0).state


def test_a_snapshot_lists_its_entitlements_as_columns_on_the_wire() -> None:
    state = snapshot_of_three()
    wire = orjson.loads(encode(state))["entitlements"]
    assert list(wire) == list(STATE_COLUMNS)
    assert wire["entitlement"] == ["gold", "silver", "spot"]
    assert wire["tier"] == ["guaranteed", "elastic", "spot"]
    assert wire["demand"]["kv"] == [e.demand.kv for e in state.entitlements]
    assert wire["debt"] == [e.debt for e in state.entitlements]


def test_a_snapshot_written_as_rows_by_an_earlier_worker_still_decodes() -> None:
    state = snapshot_of_three()
    wire = orjson.loads(encode(state))
    wire["entitlements"] = [e.model_dump(mode="json") for e in state.entitlements]
    assert decode_as(orjson.dumps(wire), PoolState) == state == decode(orjson.dumps(wire))


@pytest.mark.parametrize(
    "path", [("tier",), ("demand", "kv"), ("priority",), ("entitlement",), ("served", "tps")]
)
def test_a_snapshot_whose_columns_differ_in_length_is_refused(path: tuple[str, ...]) -> None:
    wire = orjson.loads(encode(snapshot_of_three()))
    column = wire["entitlements"]
    for key in path[:-1]:
        column = column[key]
    column[path[-1]].pop()
    with pytest.raises(DecodeError, match=r"entitlements\..*one per entitlement"):
        decode_as(orjson.dumps(wire), PoolState)


def test_a_snapshot_missing_a_column_is_refused() -> None:
    wire = orjson.loads(encode(snapshot_of_three()))
    del wire["entitlements"]["allocation"]
    with pytest.raises(DecodeError, match=r"entitlements\.allocation"):
        decode_as(orjson.dumps(wire), PoolState)


def test_names_kept_across_ticks_are_written_as_the_codec_writes_them_after_a_refill(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The kept JSON of names starts afresh past its limit and still writes the same bytes."""
    monkeypatch.setattr(columnar, "JSON_CACHE_LIMIT", 3)
    names = [f'e"{i}\\' for i in range(7)]  # escaping must survive the cache
    for pool, tier in (("p", "spot"), ("q", "elastic")):
        cols = LimitColumns(
            pool,
            1,
            0.0,
            10.0,
            names,
            [tier] * 7,
            [f"i{i % 2}" for i in range(7)],
            np.arange(21, dtype=float).reshape(7, 3) / 3,
        )
        for fast, model in zip(cols.encoded(), limit_models(cols), strict=True):
            assert_same_record(fast, model)
    assert len(columnar._ENTITLEMENT_THEN_TIER) <= 3
