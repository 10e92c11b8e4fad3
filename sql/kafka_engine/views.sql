-- PRODUCTION VARIANT (see queues.sql): parse and validate the queued records into the raw tables.
--
-- Each queue has two views: one moves valid records (JSON object, the right
-- `type`, a schema version this schema knows) into its table, the other parks
-- everything else in kafka_dead_letters with the reason (the state queue, whose
-- records come in two forms, has one view more that decides each record's form
-- once for the others). Field defaults follow
-- tokenpools/schemas/events.py. The views read `_topic`, `_partition` and
-- `_offset`, which the Kafka engine provides as virtual columns.
CREATE TABLE IF NOT EXISTS kafka_dead_letters
(
    received_at     DateTime64(3, 'UTC') DEFAULT now64(3),
    kafka_topic     LowCardinality(String),
    kafka_partition UInt16,
    kafka_offset    UInt64,
    error           String,
    raw             String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (kafka_topic, received_at)
TTL toDateTime(received_at) + INTERVAL 30 DAY;

-- Request events are the volume: each is parsed once, into a named tuple, instead of once
-- per field (≈ 8× less parsing). A key missing from the JSON takes the type's default.
CREATE MATERIALIZED VIEW IF NOT EXISTS requests_from_kafka TO requests AS
WITH JSONExtract(raw, 'Tuple(type String, v Nullable(Int64), time Float64, pool String,
    entitlement String, tier String, instance String, id String, phase String, key_hash String,
    prompt_tokens UInt32, completion_tokens UInt32, estimate_tokens UInt32, queue_delay_ms Float32,
    ttft_ms Nullable(Float32), latency_ms Nullable(Float32), status Nullable(UInt16),
    reason String, stream Bool)') AS r
SELECT
    fromUnixTimestamp64Milli(toInt64(round(r.time * 1000)), 'UTC') AS time,
    r.pool AS pool,
    r.entitlement AS entitlement,
    r.tier AS tier,
    r.instance AS instance,
    r.id AS id,
    r.phase AS phase,
    r.key_hash AS key_hash,
    r.prompt_tokens AS prompt_tokens,
    r.completion_tokens AS completion_tokens,
    r.estimate_tokens AS estimate_tokens,
    r.queue_delay_ms AS queue_delay_ms,
    r.ttft_ms AS ttft_ms,
    r.latency_ms AS latency_ms,
    ifNull(r.status, 200) AS status,
    r.reason AS reason,
    r.stream AS stream,
    _topic AS kafka_topic,
    toUInt16(_partition) AS kafka_partition,
    _offset AS kafka_offset
FROM requests_queue
WHERE r.type = 'request' AND ifNull(r.v, 1) = 1 AND r.id != ''
    AND r.phase IN ('admitted', 'rejected', 'completed', 'failed', 'cancelled');

CREATE MATERIALIZED VIEW IF NOT EXISTS requests_dead_letters TO kafka_dead_letters AS
WITH JSONExtract(raw, 'Tuple(type String, v Nullable(Int64), id String, phase String)') AS r
SELECT _topic AS kafka_topic, toUInt16(_partition) AS kafka_partition, _offset AS kafka_offset,
    multiIf(NOT isValidJSON(raw), 'not JSON', r.type != 'request', 'type: expected request',
            'invalid request event') AS error,
    raw
FROM requests_queue
WHERE NOT (r.type = 'request' AND ifNull(r.v, 1) = 1 AND r.id != ''
    AND r.phase IN ('admitted', 'rejected', 'completed', 'failed', 'cancelled'));

CREATE MATERIALIZED VIEW IF NOT EXISTS engine_from_kafka TO engine_samples AS
SELECT
    fromUnixTimestamp64Milli(toInt64(round(JSONExtractFloat(raw, 'time') * 1000)), 'UTC') AS time,
    JSONExtractString(raw, 'pool') AS pool,
    JSONExtractString(raw, 'backend') AS backend,
    if(JSONHas(raw, 'up'), JSONExtractBool(raw, 'up'), true) AS up,
    toFloat32(JSONExtractFloat(raw, 'running')) AS running,
    toFloat32(JSONExtractFloat(raw, 'waiting')) AS waiting,
    toFloat32(JSONExtractFloat(raw, 'kv_usage')) AS kv_usage,
    JSONExtractFloat(raw, 'kv_capacity_tokens') AS kv_capacity_tokens,
    JSONExtractFloat(raw, 'prompt_tokens_total') AS prompt_tokens_total,
    JSONExtractFloat(raw, 'generation_tokens_total') AS generation_tokens_total,
    JSONExtractFloat(raw, 'preemptions_total') AS preemptions_total,
    JSONExtractString(raw, 'error') AS error,
    _topic AS kafka_topic,
    toUInt16(_partition) AS kafka_partition,
    _offset AS kafka_offset
FROM engine_queue
WHERE isValidJSON(raw) AND JSONExtractString(raw, 'type') = 'engine'
    AND if(JSONHas(raw, 'v'), JSONExtractInt(raw, 'v'), 1) = 1;

CREATE MATERIALIZED VIEW IF NOT EXISTS engine_dead_letters TO kafka_dead_letters AS
SELECT _topic AS kafka_topic, toUInt16(_partition) AS kafka_partition, _offset AS kafka_offset,
    'invalid engine sample' AS error, raw
FROM engine_queue
WHERE NOT (isValidJSON(raw) AND JSONExtractString(raw, 'type') = 'engine'
    AND if(JSONHas(raw, 'v'), JSONExtractInt(raw, 'v'), 1) = 1);

-- Every state record once, with its form decided in state_check_from_kafka (below
-- the three views that read it), so that they share one validation. A snapshot
-- lists its entitlements either as columns (what workers write; docs/STREAMS.md,
-- "State snapshots") or as rows (earlier workers). A columnar one is valid only when all fifteen columns are as long as
-- the names (ARRAY JOIN refuses unequal arrays); anything else is 'invalid' and goes
-- to the dead letters, whole, with its Kafka coordinates. state_checked is a Null
-- table: it keeps nothing, its rows only pass on to the views that read it (as
-- requests_minute_feed does in sql/migrations/0009_requests_minute.sql).
CREATE TABLE IF NOT EXISTS state_checked
(
    raw             String,
    kafka_topic     LowCardinality(String),
    kafka_partition UInt16,
    kafka_offset    UInt64,
    form            Enum8('invalid' = 0, 'columns' = 1, 'rows' = 2)
)
ENGINE = Null;

-- One row per entitlement per tick, as the sink writes it, from a columnar snapshot:
-- the columns are ARRAY JOINed side by side. Every column is still cut or padded to
-- the names' length: ARRAY JOIN may run before the WHERE, and must not fail on a
-- record that the WHERE leaves out.
CREATE MATERIALIZED VIEW IF NOT EXISTS state_from_kafka TO pool_state AS
WITH length(JSONExtractArrayRaw(raw, 'entitlements', 'entitlement')) AS n
SELECT
    fromUnixTimestamp64Milli(toInt64(round(JSONExtractFloat(raw, 'time') * 1000)), 'UTC') AS time,
    JSONExtractString(raw, 'pool') AS pool,
    JSONExtractUInt(raw, 'epoch') AS epoch,
    toUInt32(JSONExtractUInt(raw, 'replicas')) AS replicas,
    JSONExtractFloat(raw, 'capacity', 'tps') AS capacity_tps,
    JSONExtractFloat(raw, 'capacity', 'kv') AS capacity_kv,
    JSONExtractFloat(raw, 'capacity', 'conc') AS capacity_conc,
    entitlement,
    tier,
    demand_tps,
    demand_kv,
    demand_conc,
    allocation_tps,
    allocation_kv,
    allocation_conc,
    limit_tps,
    limit_kv,
    limit_conc,
    served_tps,
    served_kv,
    served_conc,
    debt,
    priority,
    kafka_topic,
    kafka_partition,
    kafka_offset
FROM state_checked
ARRAY JOIN
    arrayResize(JSONExtract(raw, 'entitlements', 'entitlement', 'Array(String)'), n) AS entitlement,
    arrayResize(JSONExtract(raw, 'entitlements', 'tier', 'Array(String)'), n) AS tier,
    arrayResize(JSONExtract(raw, 'entitlements', 'demand', 'tps', 'Array(Float64)'), n) AS demand_tps,
    arrayResize(JSONExtract(raw, 'entitlements', 'demand', 'kv', 'Array(Float64)'), n) AS demand_kv,
    arrayResize(JSONExtract(raw, 'entitlements', 'demand', 'conc', 'Array(Float64)'), n) AS demand_conc,
    arrayResize(JSONExtract(raw, 'entitlements', 'allocation', 'tps', 'Array(Float64)'), n) AS allocation_tps,
    arrayResize(JSONExtract(raw, 'entitlements', 'allocation', 'kv', 'Array(Float64)'), n) AS allocation_kv,
    arrayResize(JSONExtract(raw, 'entitlements', 'allocation', 'conc', 'Array(Float64)'), n) AS allocation_conc,
    arrayResize(JSONExtract(raw, 'entitlements', 'limit', 'tps', 'Array(Float64)'), n) AS limit_tps,
    arrayResize(JSONExtract(raw, 'entitlements', 'limit', 'kv', 'Array(Float64)'), n) AS limit_kv,
    arrayResize(JSONExtract(raw, 'entitlements', 'limit', 'conc', 'Array(Float64)'), n) AS limit_conc,
    arrayResize(JSONExtract(raw, 'entitlements', 'served', 'tps', 'Array(Float64)'), n) AS served_tps,
    arrayResize(JSONExtract(raw, 'entitlements', 'served', 'kv', 'Array(Float64)'), n) AS served_kv,
    arrayResize(JSONExtract(raw, 'entitlements', 'served', 'conc', 'Array(Float64)'), n) AS served_conc,
    arrayResize(JSONExtract(raw, 'entitlements', 'debt', 'Array(Float64)'), n) AS debt,
    arrayResize(JSONExtract(raw, 'entitlements', 'priority', 'Array(Float64)'), n) AS priority
WHERE form = 'columns';

-- Snapshots of workers from before the columns: one object per entitlement.
CREATE MATERIALIZED VIEW IF NOT EXISTS state_rows_from_kafka TO pool_state AS
SELECT
    fromUnixTimestamp64Milli(toInt64(round(JSONExtractFloat(raw, 'time') * 1000)), 'UTC') AS time,
    JSONExtractString(raw, 'pool') AS pool,
    JSONExtractUInt(raw, 'epoch') AS epoch,
    toUInt32(JSONExtractUInt(raw, 'replicas')) AS replicas,
    JSONExtractFloat(raw, 'capacity', 'tps') AS capacity_tps,
    JSONExtractFloat(raw, 'capacity', 'kv') AS capacity_kv,
    JSONExtractFloat(raw, 'capacity', 'conc') AS capacity_conc,
    JSONExtractString(e, 'entitlement') AS entitlement,
    JSONExtractString(e, 'tier') AS tier,
    JSONExtractFloat(e, 'demand', 'tps') AS demand_tps,
    JSONExtractFloat(e, 'demand', 'kv') AS demand_kv,
    JSONExtractFloat(e, 'demand', 'conc') AS demand_conc,
    JSONExtractFloat(e, 'allocation', 'tps') AS allocation_tps,
    JSONExtractFloat(e, 'allocation', 'kv') AS allocation_kv,
    JSONExtractFloat(e, 'allocation', 'conc') AS allocation_conc,
    JSONExtractFloat(e, 'limit', 'tps') AS limit_tps,
    JSONExtractFloat(e, 'limit', 'kv') AS limit_kv,
    JSONExtractFloat(e, 'limit', 'conc') AS limit_conc,
    JSONExtractFloat(e, 'served', 'tps') AS served_tps,
    JSONExtractFloat(e, 'served', 'kv') AS served_kv,
    JSONExtractFloat(e, 'served', 'conc') AS served_conc,
    JSONExtractFloat(e, 'debt') AS debt,
    JSONExtractFloat(e, 'priority') AS priority,
    kafka_topic,
    kafka_partition,
    kafka_offset
FROM state_checked
ARRAY JOIN JSONExtractArrayRaw(raw, 'entitlements') AS e
WHERE form = 'rows';

CREATE MATERIALIZED VIEW IF NOT EXISTS state_dead_letters TO kafka_dead_letters AS
SELECT kafka_topic, kafka_partition, kafka_offset, 'invalid pool state' AS error, raw
FROM state_checked
WHERE form = 'invalid';

-- The state queue's first view, created after the views that read state_checked: the
-- Kafka engine starts consuming once a view is attached to it, and a record that
-- passed through state_checked before they existed would reach none of them.
CREATE MATERIALIZED VIEW IF NOT EXISTS state_check_from_kafka TO state_checked AS
WITH length(JSONExtractArrayRaw(raw, 'entitlements', 'entitlement')) AS n
SELECT raw, _topic AS kafka_topic, toUInt16(_partition) AS kafka_partition, _offset AS kafka_offset,
    multiIf(NOT (isValidJSON(raw) AND JSONExtractString(raw, 'type') = 'state'
                 AND if(JSONHas(raw, 'v'), JSONExtractInt(raw, 'v'), 1) = 1), 'invalid',
            JSONType(raw, 'entitlements') = 'Array', 'rows',
            JSONType(raw, 'entitlements') = 'Object'
                AND length(JSONExtractArrayRaw(raw, 'entitlements', 'tier')) = n
                AND length(JSONExtractArrayRaw(raw, 'entitlements', 'demand', 'tps')) = n
                AND length(JSONExtractArrayRaw(raw, 'entitlements', 'demand', 'kv')) = n
                AND length(JSONExtractArrayRaw(raw, 'entitlements', 'demand', 'conc')) = n
                AND length(JSONExtractArrayRaw(raw, 'entitlements', 'allocation', 'tps')) = n
                AND length(JSONExtractArrayRaw(raw, 'entitlements', 'allocation', 'kv')) = n
                AND length(JSONExtractArrayRaw(raw, 'entitlements', 'allocation', 'conc')) = n
                AND length(JSONExtractArrayRaw(raw, 'entitlements', 'limit', 'tps')) = n
                AND length(JSONExtractArrayRaw(raw, 'entitlements', 'limit', 'kv')) = n
                AND length(JSONExtractArrayRaw(raw, 'entitlements', 'limit', 'conc')) = n
                AND length(JSONExtractArrayRaw(raw, 'entitlements', 'served', 'tps')) = n
                AND length(JSONExtractArrayRaw(raw, 'entitlements', 'served', 'kv')) = n
                AND length(JSONExtractArrayRaw(raw, 'entitlements', 'served', 'conc')) = n
                AND length(JSONExtractArrayRaw(raw, 'entitlements', 'debt')) = n
                AND length(JSONExtractArrayRaw(raw, 'entitlements', 'priority')) = n, 'columns',
            'invalid') AS form
FROM state_queue;

CREATE MATERIALIZED VIEW IF NOT EXISTS limits_from_kafka TO limits AS
SELECT
    fromUnixTimestamp64Milli(toInt64(round(JSONExtractFloat(raw, 'issued_at') * 1000)), 'UTC')
        AS time,
    fromUnixTimestamp64Milli(toInt64(round(JSONExtractFloat(raw, 'expires_at') * 1000)), 'UTC')
        AS expires_at,
    JSONExtractString(raw, 'pool') AS pool,
    JSONExtractString(raw, 'entitlement') AS entitlement,
    JSONExtractString(raw, 'tier') AS tier,
    JSONExtractString(raw, 'instance') AS instance,
    JSONExtractUInt(raw, 'epoch') AS epoch,
    JSONExtractFloat(raw, 'limits', 'tps') AS limit_tps,
    JSONExtractFloat(raw, 'limits', 'kv') AS limit_kv,
    JSONExtractFloat(raw, 'limits', 'conc') AS limit_conc,
    if(JSONHas(raw, 'predicted_output_tokens'),
        toNullable(toUInt32(JSONExtractUInt(raw, 'predicted_output_tokens'))),
        NULL) AS predicted_output_tokens,
    _topic AS kafka_topic,
    toUInt16(_partition) AS kafka_partition,
    _offset AS kafka_offset
FROM limits_queue
WHERE isValidJSON(raw) AND JSONExtractString(raw, 'type') = 'limit'
    AND if(JSONHas(raw, 'v'), JSONExtractInt(raw, 'v'), 1) = 1;

CREATE MATERIALIZED VIEW IF NOT EXISTS scaling_from_kafka TO scaling_decisions AS
SELECT
    fromUnixTimestamp64Milli(toInt64(round(JSONExtractFloat(raw, 'time') * 1000)), 'UTC') AS time,
    JSONExtractString(raw, 'pool') AS pool,
    toUInt32(JSONExtractUInt(raw, 'current_replicas')) AS current_replicas,
    toUInt32(JSONExtractUInt(raw, 'desired_replicas')) AS desired_replicas,
    JSONExtractString(raw, 'reason') AS reason,
    JSONExtractFloat(raw, 'demand', 'tps') AS demand_tps,
    JSONExtractFloat(raw, 'demand', 'kv') AS demand_kv,
    JSONExtractFloat(raw, 'demand', 'conc') AS demand_conc,
    JSONExtractFloat(raw, 'capacity', 'tps') AS capacity_tps,
    JSONExtractFloat(raw, 'capacity', 'kv') AS capacity_kv,
    JSONExtractFloat(raw, 'capacity', 'conc') AS capacity_conc,
    _topic AS kafka_topic,
    toUInt16(_partition) AS kafka_partition,
    _offset AS kafka_offset
FROM scaling_queue
WHERE isValidJSON(raw) AND JSONExtractString(raw, 'type') = 'scaling'
    AND if(JSONHas(raw, 'v'), JSONExtractInt(raw, 'v'), 1) = 1;
