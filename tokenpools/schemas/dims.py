"""The three capacity dimensions every limit, guarantee and measurement is expressed in."""

from __future__ import annotations

from enum import IntEnum, StrEnum

from pydantic import BaseModel, ConfigDict, Field

from tokenpools.schemas.bounds import StrictFloat


class Dimension(StrEnum):
    """Inference-native capacity units.

    tps: tokens per second (prompt + generated); kv: KV-cache tokens held by
    in-flight requests; conc: in-flight requests.
    """

    TPS = "tps"
    KV = "kv"
    CONC = "conc"


DIMENSIONS: tuple[Dimension, ...] = (Dimension.TPS, Dimension.KV, Dimension.CONC)


class DimIndex(IntEnum):
    """A `Dimension`'s column in the core's (…, 3) arrays: its place in DIMENSIONS."""

    TPS = 0
    KV = 1
    CONC = 2


class Dims(BaseModel):
    """One non-negative value per dimension."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    tps: StrictFloat = Field(default=0.0, ge=0)
    kv: StrictFloat = Field(default=0.0, ge=0)
    conc: StrictFloat = Field(default=0.0, ge=0)

    def as_tuple(self) -> tuple[float, float, float]:
        """Values in DIMENSIONS order, the layout the vectorized core uses."""
        return (self.tps, self.kv, self.conc)

    @classmethod
    def from_tuple(cls, values: tuple[float, float, float] | list[float]) -> Dims:
        tps, kv, conc = values
        return cls(tps=float(tps), kv=float(kv), conc=float(conc))

    @classmethod
    def trusted(cls, tps: float, kv: float, conc: float) -> Dims:
        """`model_construct(tps=…, kv=…, conc=…)` without its generic loop over fields and aliases.

        Unchecked, for values the core computed (a tick's limits): the offline
        simulator builds thousands a simulated second, and `model_construct`'s
        generic path was the run's largest Python function. It sets what
        `model_construct` sets for this model (no aliases, defaults, extras,
        private attributes or post-init); `tests/core/test_schemas.py` holds the two equal.
        """
        dims = cls.__new__(cls)
        _set = object.__setattr__
        _set(dims, "__dict__", {"tps": tps, "kv": kv, "conc": conc})
        _set(dims, "__pydantic_fields_set__", {"tps", "kv", "conc"})
        _set(dims, "__pydantic_extra__", None)
        _set(dims, "__pydantic_private__", None)
        return dims


class OptionalDims(BaseModel):
    """Per-dimension values where `None` means "no ceiling of its own" (the pool's capacity)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    tps: StrictFloat | None = Field(default=None, ge=0)
    kv: StrictFloat | None = Field(default=None, ge=0)
    conc: StrictFloat | None = Field(default=None, ge=0)

    def as_tuple(self) -> tuple[float | None, float | None, float | None]:
        return (self.tps, self.kv, self.conc)
