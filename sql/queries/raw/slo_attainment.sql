-- SLO attainment per entitlement over the range, against the latest configured targets.
-- Admission: admitted within max_admission_delay_ms out of all decided (a rejection misses).
-- TTFT: completed requests whose time to first token met ttft_ms. NULL where no target is set.
WITH targets AS
(
    SELECT
        pool,
        entitlement,
        argMax(slo_max_admission_delay_ms, updated_at) AS delay_target_ms,
        argMax(slo_ttft_ms, updated_at) AS ttft_target_ms
    FROM entitlements FINAL
    GROUP BY pool, entitlement
)
SELECT
    r.pool AS pool,
    r.entitlement AS entitlement,
    any(t.delay_target_ms) AS admission_delay_target_ms,
    countIf(r.phase IN ('admitted', 'rejected')) AS decided,
    countIf(r.phase = 'admitted' AND r.queue_delay_ms <= t.delay_target_ms) AS admitted_in_time,
    if(admission_delay_target_ms IS NULL OR decided = 0, NULL, admitted_in_time / decided)
        AS admission_attainment,
    any(t.ttft_target_ms) AS ttft_target_ms,
    countIf(r.phase = 'completed' AND r.ttft_ms IS NOT NULL) AS with_ttft,
    countIf(r.phase = 'completed' AND r.ttft_ms <= t.ttft_target_ms) AS ttft_met,
    if(ttft_target_ms IS NULL OR with_ttft = 0, NULL, ttft_met / with_ttft) AS ttft_attainment
FROM requests AS r FINAL
LEFT JOIN targets AS t ON r.pool = t.pool AND r.entitlement = t.entitlement
WHERE r.time >= {start:DateTime64(3, 'UTC')} AND r.time < {end:DateTime64(3, 'UTC')}
    AND ({pool:String} = '' OR r.pool = {pool:String})
    AND ({entitlement:String} = '' OR r.entitlement = {entitlement:String})
GROUP BY r.pool, r.entitlement
ORDER BY r.pool, r.entitlement
