-- flywheel.run_refresh(): the refresh for schedulers, as a procedure that fails when the refresh fails.
--
-- Answers: pg_cron's (and any scheduler's) question "did the job succeed?". flywheel.refresh()
-- records a failure in refresh_log and returns it rather than raising, because raising would roll
-- the record back with everything else. This procedure commits that record first, then raises, so
-- cron.job_run_details (or psql's exit code) says failed and refresh_log still says why.
-- Call it on its own, outside a transaction block: CALL flywheel.run_refresh();
--
-- Neither SECURITY DEFINER nor a SET clause: a procedure with either may not commit. It runs with
-- the caller's rights (EXECUTE on flywheel.refresh() is all it needs) and names everything by schema.
--
-- drop: drop procedure if exists flywheel.run_refresh()
create procedure flywheel.run_refresh()
language plpgsql
as $$
declare
    outcome jsonb;
begin
    outcome := flywheel.refresh();
    commit;
    if outcome ->> 'status' <> 'ok' then
        raise exception 'flywheel refresh failed: % (refresh_id %, recorded in flywheel.refresh_log)',
                outcome ->> 'error', outcome ->> 'refresh_id'
            using errcode = coalesce(outcome ->> 'sqlstate', 'P0001'),
                  hint = 'flywheel-sync check compares the source tables with what the metrics need.';
    end if;
end
$$;

comment on procedure flywheel.run_refresh() is
    'For pg_cron and other schedulers: runs flywheel.refresh(), commits, and raises if it failed (the failure stays in refresh_log). CALL it outside a transaction block';
