-- P50 and P99 end-to-end latency and time to first token per entitlement per window (completed requests).
-- Whole minutes come from the rollup requests_minute (every stored value, so the quantiles are
-- quantileExact's), the partial minutes at the range's ends (and every row when window_s is not
-- whole minutes) from requests FINAL: the answers of raw/latency.sql.
WITH
    modulo({window_s:UInt32}, 60) = 0 AS by_window,
    -- include: rollup_range
    by_window AND rollup_whole AS by_minute
SELECT
    window_start,
    pool,
    entitlement,
    completed,
    -- quantileExact's definition, the element at index floor(level * n) of the sorted values,
    -- and 0 where there are none (as quantilesExactIf): sorting each window's values (runs the
    -- rollup keeps sorted) is about twice as fast as quantilesExactArray, which adds them one
    -- at a time.
    if(empty(latencies), toFloat32(0), latencies[toUInt64(0.5 * length(latencies)) + 1])
        AS latency_p50_ms,
    if(empty(latencies), toFloat32(0), latencies[toUInt64(0.99 * length(latencies)) + 1])
        AS latency_p99_ms,
    if(empty(ttfts), toFloat32(0), ttfts[toUInt64(0.5 * length(ttfts)) + 1]) AS ttft_p50_ms,
    if(empty(ttfts), toFloat32(0), ttfts[toUInt64(0.99 * length(ttfts)) + 1]) AS ttft_p99_ms
FROM
(
    SELECT
        window_start,
        pool,
        entitlement,
        sum(part_completed) AS completed,
        arraySort(groupArrayArray(part_latencies_ms)) AS latencies,
        arraySort(groupArrayArray(part_ttfts_ms)) AS ttfts
    FROM
    (
        SELECT
            toStartOfInterval(toDateTime64(minute, 3, 'UTC'), toIntervalSecond({window_s:UInt32}))
                AS window_start,
            pool,
            entitlement,
            completed AS part_completed,
            CAST(latencies_ms, 'Array(Float32)') AS part_latencies_ms,
            CAST(ttfts_ms, 'Array(Float32)') AS part_ttfts_ms
        FROM requests_minute
        WHERE by_minute AND minute >= rollup_from AND minute < rollup_to
            AND completed > 0
            AND ({pool:String} = '' OR pool = {pool:String})
            AND ({entitlement:String} = '' OR entitlement = {entitlement:String})
        UNION ALL
        SELECT
            toStartOfInterval(time, toIntervalSecond({window_s:UInt32})) AS window_start,
            pool,
            entitlement,
            count() AS part_completed,
            groupArrayIf(assumeNotNull(latency_ms), isNotNull(latency_ms)) AS part_latencies_ms,
            groupArrayIf(assumeNotNull(ttft_ms), isNotNull(ttft_ms)) AS part_ttfts_ms
        FROM requests FINAL
        WHERE phase = 'completed'
            AND time >= {start:DateTime64(3, 'UTC')} AND time < {end:DateTime64(3, 'UTC')}
            AND NOT (by_minute AND time >= rollup_from AND time < rollup_to)
            AND ({pool:String} = '' OR pool = {pool:String})
            AND ({entitlement:String} = '' OR entitlement = {entitlement:String})
        GROUP BY window_start, pool, entitlement
    )
    GROUP BY window_start, pool, entitlement
)
ORDER BY window_start, pool, entitlement
