-- flywheel.run_refresh(full): the refresh for schedulers, in one REPEATABLE READ snapshot taken after
-- the running refresh (if any) finished, failing the job when the refresh fails.
--
-- Answers: pg_cron's (and any scheduler's) question "did the job succeed?", and runs the refresh
-- the way the incremental refresh wants it (release 0002, docs/refresh.md):
--   1. wait for the running refresh (flywheel.wait_for_refresh_lock: its row lock, up to
--      refresh_lock_wait), then commit at once, *before* the snapshot, so a refresh that waited for
--      another reads what that one wrote; a wait that gives up is recorded, and raised;
--   2. one REPEATABLE READ transaction for the whole refresh, which takes the row lock for itself;
--   3. commit, so refresh_log keeps the run even when it failed; then raise if it did.
-- flywheel.refresh() records a failure and returns it rather than raising, because raising would
-- roll the record back with everything else. This is what flywheel-sync refresh does from Python.
-- Nothing outlives a transaction: a call cancelled anywhere (statement_timeout on a long-lived
-- pg_cron or pooled session) leaves no lock behind (release 0004; the session-level advisory lock
-- before it did, issue 14).
--
-- Call it on its own, from a session of its own, outside a transaction block:
-- CALL flywheel.run_refresh(); or CALL flywheel.run_refresh(full => true);
-- Neither SECURITY DEFINER nor a SET clause: a procedure with either may not commit. It runs with
-- the caller's rights (EXECUTE on flywheel.refresh() and wait_for_refresh_lock() is all it needs)
-- and names everything by schema.
--
-- drop: drop procedure if exists flywheel.run_refresh(boolean)
create procedure flywheel.run_refresh(full boolean default false)
language plpgsql
as $$
declare
    outcome jsonb;
begin
    outcome := flywheel.wait_for_refresh_lock("full");
    commit;
    -- First in the new transaction: even an IF would start its snapshot.
    set transaction isolation level repeatable read;
    if outcome is null then
        outcome := flywheel.refresh(full => "full");
    end if;
    commit;
    if outcome ->> 'status' <> 'ok' then
        raise exception 'flywheel refresh failed: % (refresh_id %, recorded in flywheel.refresh_log)',
                outcome ->> 'error', outcome ->> 'refresh_id'
            using errcode = coalesce(outcome ->> 'sqlstate', 'P0001'),
                  hint = 'flywheel-sync check compares the source tables with what the metrics need.';
    end if;
end
$$;

comment on procedure flywheel.run_refresh(boolean) is
    'For pg_cron and other schedulers: waits for a running refresh, runs flywheel.refresh(full) in one REPEATABLE READ snapshot, commits, and raises if it failed (the failure stays in refresh_log). CALL it outside a transaction block';
