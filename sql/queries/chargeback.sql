-- Tokens per tenant per hour for chargeback: usage reported by finished requests (completed, failed, cancelled).
-- Whole minutes come from the rollup requests_minute, the partial minutes at the range's ends from
-- requests FINAL: the answers of raw/chargeback.sql.
WITH
    -- include: rollup_range
    rollup_whole AS by_minute
SELECT
    window_start,
    pool,
    entitlement,
    max(part_tier) AS tier,
    sum(part_requests) AS requests,
    sum(part_prompt_tokens) AS prompt_tokens,
    sum(part_completion_tokens) AS completion_tokens,
    prompt_tokens + completion_tokens AS total_tokens
FROM
(
    SELECT
        toStartOfHour(minute) AS window_start,
        pool,
        entitlement,
        CAST(tier, 'LowCardinality(String)') AS part_tier,
        finished AS part_requests,
        prompt_tokens AS part_prompt_tokens,
        completion_tokens AS part_completion_tokens
    FROM requests_minute
    WHERE by_minute AND minute >= rollup_from AND minute < rollup_to
        AND finished > 0
        AND ({pool:String} = '' OR pool = {pool:String})
        AND ({entitlement:String} = '' OR entitlement = {entitlement:String})
    UNION ALL
    SELECT
        toStartOfHour(time) AS window_start,
        pool,
        entitlement,
        max(tier) AS part_tier,
        count() AS part_requests,
        sum(prompt_tokens) AS part_prompt_tokens,
        sum(completion_tokens) AS part_completion_tokens
    FROM requests FINAL
    WHERE phase IN ('completed', 'failed', 'cancelled')
        AND time >= {start:DateTime64(3, 'UTC')} AND time < {end:DateTime64(3, 'UTC')}
        AND NOT (by_minute AND time >= rollup_from AND time < rollup_to)
        AND ({pool:String} = '' OR pool = {pool:String})
        AND ({entitlement:String} = '' OR entitlement = {entitlement:String})
    GROUP BY window_start, pool, entitlement
)
GROUP BY window_start, pool, entitlement
ORDER BY window_start, pool, entitlement
