-- Request events from the sidecars (tokenpools.requests): one row per request and phase.
--
-- Replays are harmless: the sort key ends with the request's identity
-- (request_key, a 64-bit hash of id, then phase), so a record that reaches the
-- table twice (a sink restarted before committing its offsets, a producer
-- retry) collapses to one row when parts merge, and queries that must be exact
-- read with FINAL. Hashing the id keeps FINAL's merge on 8-byte keys instead of
-- strings; a collision would need two requests of one entitlement in the same
-- millisecond with equal hashes. kafka_topic/partition/offset let the sink find
-- what it already wrote after a crash (its replay watermark).
CREATE TABLE IF NOT EXISTS requests
(
    time              DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    pool              LowCardinality(String),
    entitlement       LowCardinality(String),
    tier              LowCardinality(String),
    instance          LowCardinality(String),
    id                String,
    request_key       UInt64 MATERIALIZED sipHash64(id),
    phase             LowCardinality(String),
    key_hash          String CODEC(ZSTD(1)),
    prompt_tokens     UInt32,
    completion_tokens UInt32,
    estimate_tokens   UInt32,
    queue_delay_ms    Float32,
    ttft_ms           Nullable(Float32),
    latency_ms        Nullable(Float32),
    status            UInt16,
    reason            LowCardinality(String),
    stream            Bool,
    kafka_topic       LowCardinality(String),
    kafka_partition   UInt16,
    kafka_offset      UInt64,
    ingested_at       DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (pool, entitlement, time, request_key, phase)
TTL toDateTime(time) + INTERVAL 400 DAY
SETTINGS index_granularity = 8192;
