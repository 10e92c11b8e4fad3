-- Preemptions per entitlement per window: borrowed requests the sidecar aborted to give lent room
-- back to a request within its guarantee, and the tokens they had already cost (wasted: the
-- prompt's prefill and the output generated before the abort). Only windows with a preemption
-- are listed; the admission query has the same windows' admitted counts beside them.
-- Preempted rows are rare, so they are read by their phase alone (PREWHERE) instead of merging
-- the whole table with FINAL; a row stored twice (a replayed Kafka record) has the same time,
-- request and phase, so grouping by request counts it once.
SELECT
    window_start,
    pool,
    entitlement,
    count() AS preempted,
    sum(prompt) AS wasted_prompt_tokens,
    sum(output) AS wasted_output_tokens
FROM
(
    SELECT
        toStartOfInterval(time, toIntervalSecond({window_s:UInt32})) AS window_start,
        pool,
        entitlement,
        request_key,
        any(prompt_tokens) AS prompt,
        any(completion_tokens) AS output
    FROM requests
    PREWHERE phase = 'preempted'
    WHERE time >= {start:DateTime64(3, 'UTC')} AND time < {end:DateTime64(3, 'UTC')}
        AND ({pool:String} = '' OR pool = {pool:String})
        AND ({entitlement:String} = '' OR entitlement = {entitlement:String})
    GROUP BY window_start, pool, entitlement, request_key
)
GROUP BY window_start, pool, entitlement
ORDER BY window_start, pool, entitlement
