-- Admission and denial rates per entitlement per window: arrivals, admitted, rejected, denial ratio.
-- Whole minutes come from the rollup requests_minute, the partial minutes at the range's ends (and
-- every row when window_s is not whole minutes) from requests FINAL: the answers of raw/admission.sql.
WITH
    modulo({window_s:UInt32}, 60) = 0 AS by_window,
    -- include: rollup_range
    by_window AND rollup_whole AS by_minute
SELECT
    window_start,
    pool,
    entitlement,
    sum(part_admitted) + sum(part_rejected) AS arrivals,
    sum(part_admitted) AS admitted,
    sum(part_rejected) AS rejected,
    if(arrivals = 0, NULL, rejected / arrivals) AS denial_ratio,
    admitted / {window_s:UInt32} AS admitted_per_s,
    rejected / {window_s:UInt32} AS rejected_per_s,
    sum(part_delay_sum_ms) / admitted AS admission_delay_avg_ms,
    max(part_delay_max_ms) AS admission_delay_max_ms
FROM
(
    SELECT
        toStartOfInterval(toDateTime64(minute, 3, 'UTC'), toIntervalSecond({window_s:UInt32}))
            AS window_start,
        pool,
        entitlement,
        admitted AS part_admitted,
        rejected AS part_rejected,
        admitted_delay_sum_ms AS part_delay_sum_ms,
        toFloat32(admitted_delay_max_ms) AS part_delay_max_ms
    FROM requests_minute
    WHERE by_minute AND minute >= rollup_from AND minute < rollup_to
        AND admitted + rejected > 0
        AND ({pool:String} = '' OR pool = {pool:String})
        AND ({entitlement:String} = '' OR entitlement = {entitlement:String})
    UNION ALL
    SELECT
        toStartOfInterval(time, toIntervalSecond({window_s:UInt32})) AS window_start,
        pool,
        entitlement,
        countIf(phase = 'admitted') AS part_admitted,
        countIf(phase = 'rejected') AS part_rejected,
        sumIf(toFloat64(queue_delay_ms), phase = 'admitted') AS part_delay_sum_ms,
        maxIf(queue_delay_ms, phase = 'admitted') AS part_delay_max_ms
    FROM requests FINAL
    WHERE phase IN ('admitted', 'rejected')
        AND time >= {start:DateTime64(3, 'UTC')} AND time < {end:DateTime64(3, 'UTC')}
        AND NOT (by_minute AND time >= rollup_from AND time < rollup_to)
        AND ({pool:String} = '' OR pool = {pool:String})
        AND ({entitlement:String} = '' OR entitlement = {entitlement:String})
    GROUP BY window_start, pool, entitlement
)
GROUP BY window_start, pool, entitlement
ORDER BY window_start, pool, entitlement
