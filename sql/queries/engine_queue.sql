-- Engine queue depth per backend per window: running and waiting requests, KV usage, preemptions.
SELECT
    toStartOfInterval(time, toIntervalSecond({window_s:UInt32})) AS window_start,
    pool,
    backend,
    count() AS samples,
    avg(running) AS running_avg,
    max(running) AS running_max,
    avg(waiting) AS waiting_avg,
    max(waiting) AS waiting_max,
    avg(kv_usage) AS kv_usage_avg,
    max(preemptions_total) - min(preemptions_total) AS preemptions
FROM engine_samples FINAL
WHERE up
    AND time >= {start:DateTime64(3, 'UTC')} AND time < {end:DateTime64(3, 'UTC')}
    AND ({pool:String} = '' OR pool = {pool:String})
GROUP BY window_start, pool, backend
ORDER BY window_start, pool, backend
