-- Exact per-minute rollup of request events, the source of the admission, latency,
-- slo_attainment and chargeback queries (docs/ANALYTICS.md, "Rollups").
--
-- One row per (pool, entitlement, minute). Counts and token sums are integers; the
-- values the queries take quantiles of or compare with a target (admitted queue
-- delay, completed latency and TTFT) are kept whole, as arrays of the stored
-- Float32 values, so a quantile over any set of minutes is the raw table's
-- quantileExact and a "within the target" count is exact for whatever target the
-- entitlements table holds when the query runs. `rows` counts every phase (a pool
-- and entitlement appear in slo_attainment as soon as they have any row).
--
-- Exact as long as each (request, phase) row reaches `requests` once: the view
-- counts on insert, while `requests` collapses a repeated row only when parts merge
-- (the sink's replay watermark keeps its own replays out; see "Rollups" for the rest).
CREATE TABLE IF NOT EXISTS requests_minute
(
    minute                DateTime('UTC'),
    pool                  LowCardinality(String),
    entitlement           LowCardinality(String),
    tier                  SimpleAggregateFunction(max, LowCardinality(String)),
    rows                  SimpleAggregateFunction(sum, UInt64),
    admitted              SimpleAggregateFunction(sum, UInt64),
    rejected              SimpleAggregateFunction(sum, UInt64),
    completed             SimpleAggregateFunction(sum, UInt64),
    finished              SimpleAggregateFunction(sum, UInt64),
    prompt_tokens         SimpleAggregateFunction(sum, UInt64),
    completion_tokens     SimpleAggregateFunction(sum, UInt64),
    admitted_delay_sum_ms SimpleAggregateFunction(sum, Float64),
    admitted_delay_max_ms SimpleAggregateFunction(max, Float32),
    admitted_delays_ms    SimpleAggregateFunction(groupArrayArray, Array(Float32)),
    latencies_ms          SimpleAggregateFunction(groupArrayArray, Array(Float32)),
    ttfts_ms              SimpleAggregateFunction(groupArrayArray, Array(Float32))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (pool, entitlement, minute)
TTL minute + INTERVAL 400 DAY;

-- The view aggregates what reaches a Null table, fed from every insert into `requests`, so
-- the same aggregation serves the live path and the backfill below (the rows already
-- stored, read with FINAL: each once). Migrate with no sink writing (the sink migrates
-- before it consumes); a run interrupted half-way empties the rollup and fills it again.
CREATE TABLE IF NOT EXISTS requests_minute_feed
(
    time              DateTime64(3, 'UTC'),
    pool              LowCardinality(String),
    entitlement       LowCardinality(String),
    tier              LowCardinality(String),
    phase             LowCardinality(String),
    prompt_tokens     UInt32,
    completion_tokens UInt32,
    queue_delay_ms    Float32,
    ttft_ms           Nullable(Float32),
    latency_ms        Nullable(Float32)
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS requests_minute_mv TO requests_minute AS
SELECT
    toStartOfMinute(time) AS minute,
    pool,
    entitlement,
    maxIf(tier, phase IN ('completed', 'failed', 'cancelled')) AS tier,
    count() AS rows,
    countIf(phase = 'admitted') AS admitted,
    countIf(phase = 'rejected') AS rejected,
    countIf(phase = 'completed') AS completed,
    countIf(phase IN ('completed', 'failed', 'cancelled')) AS finished,
    sumIf(toUInt64(prompt_tokens), phase IN ('completed', 'failed', 'cancelled')) AS prompt_tokens,
    sumIf(toUInt64(completion_tokens), phase IN ('completed', 'failed', 'cancelled'))
        AS completion_tokens,
    sumIf(toFloat64(queue_delay_ms), phase = 'admitted') AS admitted_delay_sum_ms,
    maxIf(queue_delay_ms, phase = 'admitted') AS admitted_delay_max_ms,
    groupArrayIf(queue_delay_ms, phase = 'admitted') AS admitted_delays_ms,
    -- Sorted per insert: a window's sort at query time then mostly meets sorted runs (a third
    -- less CPU for the latency query over a day).
    arraySort(groupArrayIf(assumeNotNull(latency_ms), phase = 'completed' AND latency_ms IS NOT NULL))
        AS latencies_ms,
    arraySort(groupArrayIf(assumeNotNull(ttft_ms), phase = 'completed' AND ttft_ms IS NOT NULL))
        AS ttfts_ms
FROM requests_minute_feed
GROUP BY minute, pool, entitlement;

CREATE MATERIALIZED VIEW IF NOT EXISTS requests_minute_feed_mv TO requests_minute_feed AS
SELECT time, pool, entitlement, tier, phase, prompt_tokens, completion_tokens, queue_delay_ms, ttft_ms,
    latency_ms
FROM requests;

TRUNCATE TABLE requests_minute;

INSERT INTO requests_minute_feed
SELECT time, pool, entitlement, tier, phase, prompt_tokens, completion_tokens, queue_delay_ms, ttft_ms,
    latency_ms
FROM requests FINAL;
