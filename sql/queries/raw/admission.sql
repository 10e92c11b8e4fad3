-- Admission and denial rates per entitlement per window: arrivals, admitted, rejected, denial ratio.
SELECT
    toStartOfInterval(time, toIntervalSecond({window_s:UInt32})) AS window_start,
    pool,
    entitlement,
    countIf(phase IN ('admitted', 'rejected')) AS arrivals,
    countIf(phase = 'admitted') AS admitted,
    countIf(phase = 'rejected') AS rejected,
    if(arrivals = 0, NULL, rejected / arrivals) AS denial_ratio,
    admitted / {window_s:UInt32} AS admitted_per_s,
    rejected / {window_s:UInt32} AS rejected_per_s,
    avgIf(queue_delay_ms, phase = 'admitted') AS admission_delay_avg_ms,
    maxIf(queue_delay_ms, phase = 'admitted') AS admission_delay_max_ms
FROM requests FINAL
WHERE phase IN ('admitted', 'rejected')
    AND time >= {start:DateTime64(3, 'UTC')} AND time < {end:DateTime64(3, 'UTC')}
    AND ({pool:String} = '' OR pool = {pool:String})
    AND ({entitlement:String} = '' OR entitlement = {entitlement:String})
GROUP BY window_start, pool, entitlement
ORDER BY window_start, pool, entitlement
