-- Limit updates (tokenpools.limits): the history the compacted topic forgets.
CREATE TABLE IF NOT EXISTS limits
(
    time            DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    expires_at      DateTime64(3, 'UTC'),
    pool            LowCardinality(String),
    entitlement     LowCardinality(String),
    tier            LowCardinality(String),
    instance        LowCardinality(String),
    epoch           UInt64,
    limit_tps       Float64,
    limit_kv        Float64,
    limit_conc      Float64,
    kafka_topic     LowCardinality(String),
    kafka_partition UInt16,
    kafka_offset    UInt64,
    ingested_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (pool, entitlement, instance, epoch)
TTL toDateTime(time) + INTERVAL 90 DAY;
