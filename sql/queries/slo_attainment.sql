-- SLO attainment per entitlement over the range, against the latest configured targets.
-- Admission: admitted within max_admission_delay_ms out of all decided (a rejection misses).
-- TTFT: completed requests whose time to first token met ttft_ms. NULL where no target is set.
-- Whole minutes come from the rollup requests_minute (every admitted delay and TTFT, compared
-- with today's targets), the partial minutes at the range's ends from requests FINAL: the
-- answers of raw/slo_attainment.sql.
WITH
    -- include: rollup_range
    targets AS
    (
        SELECT
            pool,
            entitlement,
            argMax(slo_max_admission_delay_ms, updated_at) AS delay_target_ms,
            argMax(slo_ttft_ms, updated_at) AS ttft_target_ms
        FROM entitlements FINAL
        GROUP BY pool, entitlement
    ),
    parts AS
    (
        SELECT
            pool,
            entitlement,
            rows AS part_rows,
            admitted + rejected AS part_decided,
            CAST(admitted_delays_ms, 'Array(Float32)') AS part_delays_ms,
            CAST(ttfts_ms, 'Array(Float32)') AS part_ttfts_ms
        FROM requests_minute
        WHERE rollup_whole AND minute >= rollup_from AND minute < rollup_to
            AND ({pool:String} = '' OR pool = {pool:String})
            AND ({entitlement:String} = '' OR entitlement = {entitlement:String})
        UNION ALL
        SELECT
            pool,
            entitlement,
            count() AS part_rows,
            countIf(phase IN ('admitted', 'rejected')) AS part_decided,
            groupArrayIf(queue_delay_ms, phase = 'admitted') AS part_delays_ms,
            groupArrayIf(assumeNotNull(ttft_ms), phase = 'completed' AND ttft_ms IS NOT NULL)
                AS part_ttfts_ms
        FROM requests FINAL
        WHERE time >= {start:DateTime64(3, 'UTC')} AND time < {end:DateTime64(3, 'UTC')}
            AND NOT (rollup_whole AND time >= rollup_from AND time < rollup_to)
            AND ({pool:String} = '' OR pool = {pool:String})
            AND ({entitlement:String} = '' OR entitlement = {entitlement:String})
        GROUP BY pool, entitlement
    )
SELECT
    p.pool AS pool,
    p.entitlement AS entitlement,
    any(t.delay_target_ms) AS admission_delay_target_ms,
    sum(p.part_decided) AS decided,
    sum(arrayCount(x -> x <= ifNull(t.delay_target_ms, -inf), p.part_delays_ms)) AS admitted_in_time,
    if(admission_delay_target_ms IS NULL OR decided = 0, NULL, admitted_in_time / decided)
        AS admission_attainment,
    any(t.ttft_target_ms) AS ttft_target_ms,
    sum(length(p.part_ttfts_ms)) AS with_ttft,
    sum(arrayCount(x -> x <= ifNull(t.ttft_target_ms, -inf), p.part_ttfts_ms)) AS ttft_met,
    if(ttft_target_ms IS NULL OR with_ttft = 0, NULL, ttft_met / with_ttft) AS ttft_attainment
FROM parts AS p
LEFT JOIN targets AS t ON p.pool = t.pool AND p.entitlement = t.entitlement
GROUP BY p.pool, p.entitlement
HAVING sum(p.part_rows) > 0
ORDER BY p.pool, p.entitlement
