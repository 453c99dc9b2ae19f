-- flywheel.run_refresh(full): the refresh for schedulers, in one REPEATABLE READ snapshot taken after
-- the refresh lock, failing the job when the refresh fails.
--
-- Answers: pg_cron's (and any scheduler's) question "did the job succeed?", and runs the refresh
-- the way the incremental refresh wants it (release 0002, docs/refresh.md):
--   1. the refresh's advisory lock, session-level, waited for up to refresh_lock_wait, *before* the
--      snapshot, so a refresh that waited for another reads what that one wrote;
--   2. one REPEATABLE READ transaction for the whole refresh, so every statement sees one snapshot;
--   3. commit, so refresh_log keeps the run even when it failed; then raise if it did.
-- flywheel.refresh() records a failure and returns it rather than raising, because raising would
-- roll the record back with everything else. This is what flywheel-sync refresh does from Python.
--
-- Call it on its own, from a session of its own, outside a transaction block:
-- CALL flywheel.run_refresh(); or CALL flywheel.run_refresh(full => true);
-- Neither SECURITY DEFINER nor a SET clause: a procedure with either may not commit. It runs with
-- the caller's rights (EXECUTE on flywheel.refresh() is all it needs) and names everything by schema.
--
-- drop: drop procedure if exists flywheel.run_refresh(boolean)
create procedure flywheel.run_refresh(full boolean default false)
language plpgsql
as $$
declare
    -- 'flyw' and 1: the refresh's advisory lock (refresh_v02.sql).
    lock_class constant integer := x'666c7977'::integer;
    outcome jsonb;
begin
    perform pg_catalog.set_config('lock_timeout',
        (extract(epoch from (flywheel.setting('refresh_lock_wait') #>> '{}')::interval) * 1000)::bigint || 'ms', true);
    begin
        perform pg_catalog.pg_advisory_lock(lock_class, 1);
    exception when lock_not_available then
        raise exception 'another flywheel refresh is running and did not finish within refresh_lock_wait (%)',
                flywheel.setting('refresh_lock_wait') #>> '{}'
            using errcode = 'lock_not_available',
                  hint = 'Let it finish (see pg_stat_activity and flywheel.refresh_log), or raise the refresh_lock_wait setting.';
    end;
    commit;
    set transaction isolation level repeatable read;
    outcome := flywheel.refresh(full => "full");
    commit;
    perform pg_catalog.pg_advisory_unlock(lock_class, 1);
    if outcome ->> 'status' <> 'ok' then
        raise exception 'flywheel refresh failed: % (refresh_id %, recorded in flywheel.refresh_log)',
                outcome ->> 'error', outcome ->> 'refresh_id'
            using errcode = coalesce(outcome ->> 'sqlstate', 'P0001'),
                  hint = 'flywheel-sync check compares the source tables with what the metrics need.';
    end if;
end
$$;

comment on procedure flywheel.run_refresh(boolean) is
    'For pg_cron and other schedulers: takes the refresh lock, runs flywheel.refresh(full) in one REPEATABLE READ snapshot, commits, and raises if it failed (the failure stays in refresh_log). CALL it outside a transaction block';
