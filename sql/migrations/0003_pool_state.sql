-- Controller ticks (tokenpools.state), flattened: one row per entitlement per tick,
-- with the pool's capacity repeated so a query never needs a join.
CREATE TABLE IF NOT EXISTS pool_state
(
    time            DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    pool            LowCardinality(String),
    epoch           UInt64,
    replicas        UInt32,
    capacity_tps    Float64,
    capacity_kv     Float64,
    capacity_conc   Float64,
    entitlement     LowCardinality(String),
    tier            LowCardinality(String),
    demand_tps      Float64,
    demand_kv       Float64,
    demand_conc     Float64,
    allocation_tps  Float64,
    allocation_kv   Float64,
    allocation_conc Float64,
    limit_tps       Float64,
    limit_kv        Float64,
    limit_conc      Float64,
    served_tps      Float64,
    served_kv       Float64,
    served_conc     Float64,
    debt            Float64,
    priority        Float64,
    kafka_topic     LowCardinality(String),
    kafka_partition UInt16,
    kafka_offset    UInt64,
    ingested_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(time)
ORDER BY (pool, entitlement, time)
TTL toDateTime(time) + INTERVAL 90 DAY;
