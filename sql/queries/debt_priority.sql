-- Service debt and priority weight per entitlement per window (elastic tenants under scarcity).
SELECT
    toStartOfInterval(time, toIntervalSecond({window_s:UInt32})) AS window_start,
    pool,
    entitlement,
    any(tier) AS tier,
    avg(debt) AS debt_avg,
    max(debt) AS debt_max,
    avg(priority) AS priority_avg,
    max(priority) AS priority_max,
    avg(demand_conc) AS demand_conc_avg,
    avg(served_conc) AS served_conc_avg
FROM pool_state FINAL
WHERE time >= {start:DateTime64(3, 'UTC')} AND time < {end:DateTime64(3, 'UTC')}
    AND ({pool:String} = '' OR pool = {pool:String})
    AND ({entitlement:String} = '' OR entitlement = {entitlement:String})
GROUP BY window_start, pool, entitlement
ORDER BY window_start, pool, entitlement
