-- flywheel.stuck_counts(stuck_before, stuck_changed, type4_changed): how many incidents are stuck
-- and how many investigating ones are TYPE-4, kept by differences instead of counted every minute.
--
-- Answers, for flywheel.write_snapshot (the refresh's active_incidents step; nobody else calls it):
-- the snapshot's incidents_stuck (investigating, created_at <= stuck_before, i.e. now - stuck_after)
-- and type4_count (investigating, notification_type TYPE-4), over flywheel.tracked_incidents, which
-- holds every active incident as last read. Counting them cost O(active set) every run: 100 000 tracked
-- investigating incidents on a platform where a fifth of all incidents got stuck (issue 15, M),
-- 4-5x the routine refresh of a normal platform. So refresh_state keeps both counts and the
-- stuck_before they were taken at, and a run changes them by:
--   stuck_changed, type4_changed  the difference the run's changed rows made (their state now less
--                                 the state counted, at the kept stuck_before): the incidents step
--                                 knows it (counted against seen) without reading the active set;
--   the incidents that became stuck since: investigating with created_at in (kept stuck_before,
--                                 stuck_before], read through the partial index
--                                 tracked_incidents_investigating (created_at).
-- It counts the tracked rows whole when told nothing of the changes (NULL: a full refresh, which
-- rebuilt them), when no counts are kept (the first run of release 0006), and when stuck_before
-- moves back (as_of moved backwards, or stuck_after lengthened; a stuck_after shortened moves it
-- forward, and the incidents it makes stuck are the range read above). A change of timezone or
-- source_schema makes the refresh full, so it recounts then too.
--
-- It writes the counts and stuck_before into flywheel.refresh_state (when the row exists; the first
-- refresh ever writes it afterwards, so the next run counts whole once).
--
-- When changing this, also change: flywheel.refresh_incidents_incremental (the differences it returns),
-- docs/refresh.md.
--
-- drop: drop function if exists flywheel.stuck_counts(timestamptz, bigint, bigint)
create function flywheel.stuck_counts(stuck_before timestamptz, stuck_changed bigint, type4_changed bigint,
                                      out incidents_stuck bigint, out type4_count bigint)
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    kept flywheel.refresh_state;
begin
    select * into kept from flywheel.refresh_state;
    if stuck_changed is null or type4_changed is null or kept.incidents_stuck is null or kept.type4_count is null
       or kept.stuck_before is null or stuck_before < kept.stuck_before then
        -- Through the partial indexes on the investigating rows.
        select count(*) into incidents_stuck from flywheel.tracked_incidents as tracked
         where tracked.status = 'investigating' and tracked.created_at <= stuck_counts.stuck_before;
        select count(*) into type4_count from flywheel.tracked_incidents as tracked
         where tracked.status = 'investigating' and tracked.notification_type = 'TYPE-4';
    else
        select kept.incidents_stuck + stuck_changed + count(*) into incidents_stuck
          from flywheel.tracked_incidents as tracked
         where tracked.status = 'investigating'
           and tracked.created_at > kept.stuck_before and tracked.created_at <= stuck_counts.stuck_before;
        type4_count := kept.type4_count + type4_changed;
    end if;
    update flywheel.refresh_state
       set incidents_stuck = stuck_counts.incidents_stuck, type4_count = stuck_counts.type4_count,
           stuck_before = stuck_counts.stuck_before;
end
$$;

comment on function flywheel.stuck_counts(timestamptz, bigint, bigint) is
    'For flywheel.refresh(): the stuck incidents (investigating, created_at <= stuck_before) and the investigating TYPE-4 ones among the tracked rows, kept in refresh_state and changed by the run''s differences (stuck_changed, type4_changed at the kept stuck_before) plus the incidents newly past stuck_before; counted whole when the differences are NULL (full), none are kept, or stuck_before moved back';
