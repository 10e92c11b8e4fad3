-- Engine samples from the metrics scraper (tokenpools.engine): one row per scrape of one backend.
CREATE TABLE IF NOT EXISTS engine_samples
(
    time                    DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    pool                    LowCardinality(String),
    backend                 LowCardinality(String),
    up                      Bool,
    running                 Float32,
    waiting                 Float32,
    kv_usage                Float32,
    kv_capacity_tokens      Float64,
    prompt_tokens_total     Float64,
    generation_tokens_total Float64,
    preemptions_total       Float64,
    error                   String,
    kafka_topic             LowCardinality(String),
    kafka_partition         UInt16,
    kafka_offset            UInt64,
    ingested_at             DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(time)
ORDER BY (pool, backend, time)
TTL toDateTime(time) + INTERVAL 90 DAY;
