"""Learned output lengths, live: the worker feeds the core's predictor and publishes with limits.

The sidecar reserves KV for `min(max_tokens, prediction)` instead of
`max_tokens` (docs/SIDECAR.md, "Reclaim"), so the prediction must follow each
entitlement's real completions. Per owned pool this keeps one
`tokenpools.output_length.OutputLengthPredictor` (the estimator lives in the
core), feeds it the `completed` request events of each screened batch — only
completed ones: a preempted or cancelled request's length is cut short and
would bias the quantile down — and writes its current predictions into each
tick's limit records (`LimitUpdate.predicted_output_tokens`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping

import numpy as np

from streams.screening import Screened
from tokenpools.controller import TickResult
from tokenpools.output_length import OutputLengthPredictor
from tokenpools.schemas import PoolConfigRecord
from tokenpools.schemas.codec import RequestRecord
from tokenpools.schemas.events import PhaseCode
from tokenpools.windows import RequestBatch

_COMPLETED = PhaseCode.COMPLETED.value
ConfigOf = Callable[[str], PoolConfigRecord | None]


class OutputLengths:
    """One predictor per pool, its entitlements following the pool's config."""

    def __init__(self) -> None:
        # per pool: the config followed, its predictor, and the predictor's row per name
        self._predictors: dict[
            str, tuple[PoolConfigRecord, OutputLengthPredictor, dict[str, int]]
        ] = {}

    def _predictor(self, config: PoolConfigRecord) -> tuple[OutputLengthPredictor, dict[str, int]]:
        """The pool's predictor and its row per entitlement name (built once per config)."""
        pool = config.pool.name
        held = self._predictors.get(pool)
        if held is not None and held[0] is config:
            return held[1], held[2]
        priors = {e.name: e.expected_output_tokens for e in config.entitlements}
        if held is None:
            predictor = OutputLengthPredictor(priors)
        else:  # a new config: what was learned for names still present is kept
            predictor = held[1]
            predictor.set_entitlements(priors)
        index = {name: row for row, name in enumerate(predictor.names)}
        self._predictors[pool] = (config, predictor, index)
        return predictor, index

    def forget(self, pool: str) -> None:
        self._predictors.pop(pool, None)

    def observe(self, events: Mapping[str, list[RequestRecord]], config_of: ConfigOf) -> int:
        """Learn the completed events of a screened batch (grouped by pool); returns how many."""
        return self._observe(
            ((pool, RequestBatch.of(batch), None) for pool, batch in events.items()), config_of
        )

    def observe_screened(self, screened: Screened, config_of: ConfigOf) -> int:
        """`observe` for what screening kept, by columns (no Python step per event)."""
        batch = screened.batch
        return self._observe(
            ((pool, batch, idx) for pool, idx in screened.selected.items()), config_of
        )

    def _observe(
        self, parts: Iterable[tuple[str, RequestBatch, np.ndarray | None]], config_of: ConfigOf
    ) -> int:
        learned = 0
        for pool, batch, select in parts:
            config = config_of(pool)
            if config is None:
                continue
            predictor, index = self._predictor(config)
            phase, ent, tokens = batch.phase, batch.entitlement, batch.completion_tokens
            if select is not None:
                phase, ent, tokens = phase[select], ent[select], tokens[select]
            done = (phase == _COMPLETED) & (tokens > 0)
            ent, tokens = ent[done], tokens[done]
            # only the names these completions use are looked up (the batch holds every pool's)
            names = batch.entitlement_names
            lookup = np.full(len(names), -1, np.int64)
            for code in np.unique(ent).tolist():
                lookup[code] = index.get(names[code], -1)
            rows = lookup[ent]
            keep = rows >= 0
            if keep.any():
                predictor.observe(rows[keep], tokens[keep].astype(np.int64))
                learned += int(np.count_nonzero(keep))
        return learned

    def annotate(self, result: TickResult, config: PoolConfigRecord | None) -> None:
        """Put the pool's current predictions into the tick's limit records (before publishing)."""
        if config is None:
            return
        predictor, _ = self._predictor(config)
        predicted = predictor.predict()
        index = {name: row for row, name in enumerate(predictor.names)}
        cols = result.limit_columns
        per_row = [
            None if (row := index.get(name)) is None else int(predicted[row])
            for name in cols.entitlements
        ]
        result.limit_columns = dataclasses.replace(cols, predicted_output_tokens=per_row)
