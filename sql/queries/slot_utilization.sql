-- Concurrency slots per entitlement per window: in use (served), allocated, limit, and share of the pool.
SELECT
    toStartOfInterval(time, toIntervalSecond({window_s:UInt32})) AS window_start,
    pool,
    entitlement,
    any(tier) AS tier,
    avg(served_conc) AS slots_in_use,
    avg(allocation_conc) AS slots_allocated,
    avg(limit_conc) AS slots_limit,
    avg(capacity_conc) AS pool_slots,
    if(pool_slots = 0, NULL, slots_in_use / pool_slots) AS pool_share,
    if(slots_allocated = 0, NULL, slots_in_use / slots_allocated) AS allocation_used
FROM pool_state FINAL
WHERE time >= {start:DateTime64(3, 'UTC')} AND time < {end:DateTime64(3, 'UTC')}
    AND ({pool:String} = '' OR pool = {pool:String})
    AND ({entitlement:String} = '' OR entitlement = {entitlement:String})
GROUP BY window_start, pool, entitlement
ORDER BY window_start, pool, entitlement
