"""Typed schemas: configuration, topic records, and their wire encoding."""

from tokenpools.schemas.codec import DecodeError, decode, decode_as, encode
from tokenpools.schemas.config import (
    ControllerSettings,
    EnforcementSettings,
    EntitlementSpec,
    FallbackMode,
    PlatformConfig,
    PoolSpec,
    ScalingPolicy,
    Slo,
    Tier,
)
from tokenpools.schemas.dims import DIMENSIONS, Dimension, Dims, OptionalDims
from tokenpools.schemas.events import (
    SCHEMA_VERSION,
    EngineSample,
    EntitlementState,
    LimitUpdate,
    Phase,
    PoolConfigRecord,
    PoolState,
    RequestEvent,
    ScalingDecision,
)

__all__ = [
    "DIMENSIONS",
    "SCHEMA_VERSION",
    "ControllerSettings",
    "DecodeError",
    "Dimension",
    "Dims",
    "EnforcementSettings",
    "EngineSample",
    "EntitlementSpec",
    "EntitlementState",
    "FallbackMode",
    "LimitUpdate",
    "OptionalDims",
    "Phase",
    "PlatformConfig",
    "PoolConfigRecord",
    "PoolSpec",
    "PoolState",
    "RequestEvent",
    "ScalingDecision",
    "ScalingPolicy",
    "Slo",
    "Tier",
    "decode",
    "decode_as",
    "encode",
]
