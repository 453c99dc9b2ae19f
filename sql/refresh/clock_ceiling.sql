-- flywheel.clock_ceiling(): the latest time the refresh believes: now() plus five minutes of clock skew.
--
-- Answers: how far into the future a source timestamp or an as_of may lie and still be taken at its
-- word. flywheel.refresh() caps every watermark here, so a row whose updated_at (or created_at) says
-- 2100 is read again by every refresh until its time comes, instead of pushing the watermark past
-- every row written after it (issue 14); flywheel.metrics_clock() refuses an as_of beyond it. Five
-- minutes covers the platform's servers' clocks running ahead of the database's, and is less than the
-- lookback (refresh_state.lookback, 10 minutes), so a row written now is never behind the capped watermark.
--
-- When changing this, also change: docs/refresh.md ("Rows from the future").
--
-- drop: drop function if exists flywheel.clock_ceiling()
create function flywheel.clock_ceiling()
returns timestamptz
language sql
stable parallel safe
set search_path = pg_catalog, pg_temp
return now() + interval '5 minutes';

comment on function flywheel.clock_ceiling() is
    'now() plus 5 minutes of clock skew: no watermark of flywheel.refresh() and no as_of goes past it';
