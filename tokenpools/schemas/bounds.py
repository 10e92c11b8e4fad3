"""What every consumer of a record can hold: the value bounds of the schemas.

A record is only as good as the narrowest place it is stored. The ClickHouse
raw tables (`sql/migrations`) keep token counts as UInt32, latencies as
Float32 and times as DateTime64(3); a value the schema accepted but a column
cannot hold used to make the sink's insert fail for good (issue 11). So the
bounds live here, once, and the schemas (`events`, `config`, `dims`), the
fast request decoder (`codec.RequestRecord`) and the sidecar's estimate all use them: a record
inside them fits every consumer, one outside is refused by all of them alike.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, Strict

UINT32_MAX = 2**32 - 1
"""Token counts: ClickHouse `UInt32` columns (a 4 G-token request is no request)."""
UINT64_SAFE_MAX = 2**53
"""Epochs and other large integers: exact in a float64 and in ClickHouse `UInt64`."""
FLOAT32_MAX = 3.4028234663852886e38
"""Milliseconds and engine gauges stored as ClickHouse `Float32`."""
MAX_TIME_S = 4_102_444_800.0
"""Unix seconds of 2100-01-01: far beyond any live record, far inside DateTime64(3)'s range.

A clock this far off is an error, not a timestamp; ms of it (x1000) stay exact in Int64."""

# Strict numbers for what operators write (YAML) and producers send: `true` is not 1,
# "5" is not 5, and an int field refuses 2.5. Floats still take ints (`tps: 100`).
StrictFloat = Annotated[float, Strict()]
StrictInt = Annotated[int, Strict()]

TokenCount = Annotated[int, Strict(), Field(ge=0, le=UINT32_MAX)]  # `true` is no count
Milliseconds = Annotated[float, Field(ge=0, le=FLOAT32_MAX)]
Gauge32 = Annotated[float, Field(ge=0, le=FLOAT32_MAX)]
UnixTime = Annotated[float, Field(ge=0, le=MAX_TIME_S, description="unix seconds")]
Count64 = Annotated[int, Field(ge=0, le=UINT64_SAFE_MAX)]
Replicas = Annotated[int, Field(ge=0, le=UINT32_MAX)]
