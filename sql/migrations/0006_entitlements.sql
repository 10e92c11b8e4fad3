-- Entitlement configuration history (tokenpools.config), one version per config record.
-- `updated_at` is the Kafka timestamp of the pool's config record; queries take the
-- latest version with argMax. No TTL: a contract's terms are kept.
CREATE TABLE IF NOT EXISTS entitlements
(
    updated_at                 DateTime64(3, 'UTC'),
    pool                       LowCardinality(String),
    entitlement                LowCardinality(String),
    tier                       LowCardinality(String),
    weight                     Float64,
    guarantee_tps              Float64,
    guarantee_kv               Float64,
    guarantee_conc             Float64,
    burst_tps                  Nullable(Float64),
    burst_kv                   Nullable(Float64),
    burst_conc                 Nullable(Float64),
    slo_ttft_ms                Nullable(Float64),
    slo_max_admission_delay_ms Nullable(Float64),
    kafka_topic                LowCardinality(String),
    kafka_partition            UInt16,
    kafka_offset               UInt64,
    ingested_at                DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (pool, entitlement, updated_at);
