-- Scaling decisions in the range: when each pool's desired replica count changed, and why.
SELECT
    time,
    pool,
    current_replicas,
    desired_replicas,
    reason,
    demand_conc,
    capacity_conc
FROM scaling_decisions FINAL
WHERE time >= {start:DateTime64(3, 'UTC')} AND time < {end:DateTime64(3, 'UTC')}
    AND ({pool:String} = '' OR pool = {pool:String})
ORDER BY time, pool
