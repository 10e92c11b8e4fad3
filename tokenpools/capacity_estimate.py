"""Per-replica token throughput learned from engine samples, with the configured value as prior.

`per_replica.tps` is a guess made when a pool is configured; what an engine
really sustains depends on the traffic's prompt/output mix (a prompt-heavy
trace ran at 7,550 tok/s on an engine configured for 6,000). The worker feeds
each backend's scrapes in; the capacity model uses `estimate()` for `c_tps`.

Estimator (docs/CAPACITY_MODEL.md, "Capacity from measurement"):

* Each pair of consecutive scrapes of one backend gives a rate
  r = Δ(prompt + generation tokens) / Δt over that interval.
* Only a **saturated** interval measures capacity: the engine had requests
  waiting, or ran at least `saturated_fraction` of its slots, or held at least
  `saturated_fraction` of its KV cache. An unsaturated interval only shows
  that capacity is at least r, so it can raise nothing but the floor below.
* Estimate = the precision-weighted mean of the prior and the saturated rates,
  each weighted by its interval's length and decayed with `half_life_s`:
  (w₀·prior + Σ wᵢ·rᵢ) / (w₀ + Σ wᵢ), where the prior counts as
  `prior_weight_s` seconds of saturated observation made at the first scrape
  (it decays like the others, so it never vanishes without a measurement to
  replace it). With no saturation seen it stays the configured value; after a
  few half-lives saturated it follows the measurement.
* Floor: never below the decayed mean of the highest unsaturated rates
  seen (an engine that served r without saturating can serve r).
* Implausible rates — above `max_ratio` × the prior, e.g. a forged or
  misattributed sample whose counters jump — are discarded, so no sample can
  raise the pool's capacity beyond that bound.

Pure: time comes from the samples; O(1) per sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tokenpools.schemas.events import EngineSample


@dataclass(slots=True)
class _Last:
    time: float
    tokens: float


class ThroughputEstimator:
    """Sustainable tokens/s of one replica (pooled over a pool's backends)."""

    def __init__(
        self,
        prior_tps: float,
        *,
        max_num_seqs: float,
        prior_weight_s: float = 60.0,
        half_life_s: float = 300.0,
        saturated_fraction: float = 0.95,
        max_ratio: float = 4.0,
    ) -> None:
        if prior_tps < 0 or prior_weight_s <= 0 or half_life_s <= 0 or max_ratio <= 1:
            raise ValueError(
                "need prior_tps >= 0, prior_weight_s > 0, half_life_s > 0, max_ratio > 1"
            )
        self.max_rate = max_ratio * prior_tps
        self.prior_tps = prior_tps
        self.max_num_seqs = max_num_seqs
        self.prior_weight_s = prior_weight_s
        self.half_life_s = half_life_s
        self.saturated_fraction = saturated_fraction
        self._last: dict[str, _Last] = {}
        self._prior_weight = prior_weight_s  # decays with the observations
        self._weight = 0.0  # decayed seconds of saturated observation
        self._weighted = 0.0  # decayed Σ w·r
        self._floor = 0.0
        self._clock = -math.inf

    def _decay_to(self, now: float) -> None:
        if now > self._clock:
            if math.isfinite(self._clock):
                f = 2.0 ** (-(now - self._clock) / self.half_life_s)
                self._weight *= f
                self._prior_weight *= f
                self._weighted *= f
                self._floor *= f
            self._clock = now

    def saturated(self, sample: EngineSample) -> bool:
        """Whether the engine was at capacity when scraped (its rate then measures capacity)."""
        f = self.saturated_fraction
        return sample.waiting > 0 or sample.running >= f * self.max_num_seqs or sample.kv_usage >= f

    def observe(self, sample: EngineSample) -> None:
        """One scrape; backends are told apart by `sample.backend`. A counter reset restarts."""
        if not sample.up:
            self._last.pop(sample.backend, None)
            return
        tokens = sample.prompt_tokens_total + sample.generation_tokens_total
        last = self._last.get(sample.backend)
        self._last[sample.backend] = _Last(sample.time, tokens)
        if last is None or sample.time <= last.time or tokens < last.tokens:
            return
        dt = sample.time - last.time
        rate = (tokens - last.tokens) / dt
        if rate > self.max_rate:
            return
        self._decay_to(sample.time)
        if self.saturated(sample):
            self._weight += dt
            self._weighted += dt * rate
        else:
            self._floor = max(self._floor, rate)

    def estimate(self) -> float:
        """Tokens/s one replica sustains: the prior, moved toward what saturated engines did."""
        w0 = self._prior_weight
        mean = (w0 * self.prior_tps + self._weighted) / (w0 + self._weight)
        return max(mean, self._floor)
