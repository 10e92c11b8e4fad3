-- Tokens per tenant per hour for chargeback: usage reported by finished requests (completed, failed, cancelled).
SELECT
    toStartOfHour(time) AS window_start,
    pool,
    entitlement,
    max(tier) AS tier,
    count() AS requests,
    sum(prompt_tokens) AS prompt_tokens,
    sum(completion_tokens) AS completion_tokens,
    prompt_tokens + completion_tokens AS total_tokens
FROM requests FINAL
WHERE phase IN ('completed', 'failed', 'cancelled')
    AND time >= {start:DateTime64(3, 'UTC')} AND time < {end:DateTime64(3, 'UTC')}
    AND ({pool:String} = '' OR pool = {pool:String})
    AND ({entitlement:String} = '' OR entitlement = {entitlement:String})
GROUP BY window_start, pool, entitlement
ORDER BY window_start, pool, entitlement
