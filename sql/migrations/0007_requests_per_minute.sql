-- Per-minute rollup of request events per entitlement, maintained on insert.
--
-- Counts and token sums are SimpleAggregateFunction(sum); latency, TTFT and
-- queue delay keep t-digest states so any range of minutes merges into
-- quantiles without reading the raw rows. Fed by every insert into
-- `requests`: the sink skips records it already wrote (its replay watermark),
-- which keeps this rollup exact across restarts; the exact-by-construction
-- numbers come from the raw table with FINAL (see docs/ANALYTICS.md).
CREATE TABLE IF NOT EXISTS requests_per_minute
(
    minute            DateTime('UTC'),
    pool              LowCardinality(String),
    entitlement       LowCardinality(String),
    admitted          SimpleAggregateFunction(sum, UInt64),
    rejected          SimpleAggregateFunction(sum, UInt64),
    completed         SimpleAggregateFunction(sum, UInt64),
    failed            SimpleAggregateFunction(sum, UInt64),
    cancelled         SimpleAggregateFunction(sum, UInt64),
    prompt_tokens     SimpleAggregateFunction(sum, UInt64),
    completion_tokens SimpleAggregateFunction(sum, UInt64),
    latency_ms        AggregateFunction(quantilesTDigest(0.5, 0.9, 0.99), Float32),
    ttft_ms           AggregateFunction(quantilesTDigest(0.5, 0.9, 0.99), Float32),
    queue_delay_ms    AggregateFunction(quantilesTDigest(0.5, 0.9, 0.99), Float32)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (pool, entitlement, minute)
TTL minute + INTERVAL 800 DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS requests_per_minute_mv TO requests_per_minute AS
SELECT
    toStartOfMinute(time) AS minute,
    pool,
    entitlement,
    countIf(phase = 'admitted') AS admitted,
    countIf(phase = 'rejected') AS rejected,
    countIf(phase = 'completed') AS completed,
    countIf(phase = 'failed') AS failed,
    countIf(phase = 'cancelled') AS cancelled,
    sumIf(toUInt64(prompt_tokens), phase IN ('completed', 'failed', 'cancelled')) AS prompt_tokens,
    sumIf(toUInt64(completion_tokens), phase IN ('completed', 'failed', 'cancelled'))
        AS completion_tokens,
    quantilesTDigestStateIf(0.5, 0.9, 0.99)(
        assumeNotNull(latency_ms), phase = 'completed' AND latency_ms IS NOT NULL) AS latency_ms,
    quantilesTDigestStateIf(0.5, 0.9, 0.99)(
        assumeNotNull(ttft_ms), phase = 'completed' AND ttft_ms IS NOT NULL) AS ttft_ms,
    quantilesTDigestStateIf(0.5, 0.9, 0.99)(queue_delay_ms, phase = 'admitted') AS queue_delay_ms
FROM requests
GROUP BY minute, pool, entitlement;
