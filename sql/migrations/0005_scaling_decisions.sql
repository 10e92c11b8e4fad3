-- Scaling decisions (tokenpools.scaling): why a pool's replica count changed.
CREATE TABLE IF NOT EXISTS scaling_decisions
(
    time             DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    pool             LowCardinality(String),
    current_replicas UInt32,
    desired_replicas UInt32,
    reason           String,
    demand_tps       Float64,
    demand_kv        Float64,
    demand_conc      Float64,
    capacity_tps     Float64,
    capacity_kv      Float64,
    capacity_conc    Float64,
    kafka_topic      LowCardinality(String),
    kafka_partition  UInt16,
    kafka_offset     UInt64,
    ingested_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (pool, time)
TTL toDateTime(time) + INTERVAL 400 DAY;
