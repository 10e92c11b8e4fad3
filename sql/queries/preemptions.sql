-- Preemptions per entitlement per window: borrowed requests the sidecar aborted to give lent room
-- back to a request within its guarantee, the tokens they had already cost (wasted: the prompt's
-- prefill and the output generated before the abort) and their share of the entitlement's
-- finished requests. Only entitlements with a preemption in the window are listed.
SELECT
    toStartOfInterval(time, toIntervalSecond({window_s:UInt32})) AS window_start,
    pool,
    entitlement,
    countIf(phase = 'preempted') AS preempted,
    countIf(phase = 'completed') AS completed,
    sumIf(prompt_tokens, phase = 'preempted') AS wasted_prompt_tokens,
    sumIf(completion_tokens, phase = 'preempted') AS wasted_output_tokens,
    preempted / (preempted + completed) AS preempted_share
FROM requests FINAL
WHERE time >= {start:DateTime64(3, 'UTC')} AND time < {end:DateTime64(3, 'UTC')}
    AND ({pool:String} = '' OR pool = {pool:String})
    AND ({entitlement:String} = '' OR entitlement = {entitlement:String})
    AND phase IN ('preempted', 'completed')
GROUP BY window_start, pool, entitlement
HAVING preempted > 0
ORDER BY window_start, pool, entitlement
