-- The rollup's range and its check before use, shared by the queries that read
-- requests_minute (each names it on an include line of its WITH).
-- rollup_from .. rollup_to: the whole minutes inside [start, end). rollup_whole: whether the
-- rollup may answer them.
toStartOfMinute({start:DateTime64(3, 'UTC')}) AS start_minute,
if(start_minute = {start:DateTime64(3, 'UTC')}, start_minute, start_minute + toIntervalMinute(1))
    AS rollup_from,
toStartOfMinute({end:DateTime64(3, 'UTC')}) AS rollup_to,
-- Whole minutes come from the rollup only while it holds as many rows as the raw table there
-- (counted without FINAL: from part metadata, milliseconds); otherwise (a crash between a
-- raw part and the view's, duplicates merged away) the whole range is read from the raw table.
(
    SELECT count() FROM requests
    WHERE time >= rollup_from AND time < rollup_to
        AND ({pool:String} = '' OR pool = {pool:String})
        AND ({entitlement:String} = '' OR entitlement = {entitlement:String})
) = (
    SELECT sum(rows) FROM requests_minute
    WHERE minute >= rollup_from AND minute < rollup_to
        AND ({pool:String} = '' OR pool = {pool:String})
        AND ({entitlement:String} = '' OR entitlement = {entitlement:String})
) AS rollup_whole,
