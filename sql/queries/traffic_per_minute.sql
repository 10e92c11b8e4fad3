-- Request volume, tokens and latency quantiles per entitlement per minute from the rollup
-- (requests_per_minute): cheap over months; t-digest quantiles are estimates.
SELECT
    minute AS window_start,
    pool,
    entitlement,
    sum(admitted) AS admitted,
    sum(rejected) AS rejected,
    sum(completed) AS completed,
    sum(prompt_tokens) + sum(completion_tokens) AS tokens,
    quantilesTDigestMerge(0.5, 0.9, 0.99)(latency_ms)[1] AS latency_p50_ms,
    quantilesTDigestMerge(0.5, 0.9, 0.99)(latency_ms)[3] AS latency_p99_ms
FROM requests_per_minute
WHERE minute >= toStartOfMinute({start:DateTime64(3, 'UTC')})
    AND minute < {end:DateTime64(3, 'UTC')}
    AND ({pool:String} = '' OR pool = {pool:String})
    AND ({entitlement:String} = '' OR entitlement = {entitlement:String})
GROUP BY window_start, pool, entitlement
ORDER BY window_start, pool, entitlement
