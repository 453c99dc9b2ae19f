-- The refresh's mutual exclusion: a row lock on flywheel.refresh_lock, which only the flywheel
-- functions can take.
--
-- Answers: "is another refresh running?", for flywheel.refresh() and its callers. Until release 0004
-- this was the advisory lock ('flyw', 1), which any login could take to stop every refresh, and which
-- CALL flywheel.run_refresh() held at session level: a call cancelled by statement_timeout kept it
-- until the session ended, so a long-lived (pooled, pg_cron) session blocked every other refresh.
-- A row lock lives and dies with its transaction, and taking it needs UPDATE on flywheel.refresh_lock,
-- which no role is granted (issue 14). Two functions:
--   * flywheel.take_refresh_lock(): updates the row (holder_pid, taken_at), waiting up to the
--     refresh_lock_wait setting; flywheel.refresh() calls it first.
--   * flywheel.wait_for_refresh_lock(full): for callers that want their snapshot to start after the
--     running refresh (flywheel-sync refresh, flywheel.run_refresh()): waits the same way in a
--     transaction of the caller's, which then commits, releasing the row at once. A wait that gives
--     up, is cancelled or fails is recorded in refresh_log (and returned); NULL when the lock was free.
-- Under REPEATABLE READ an update of a row that a refresh committed after the snapshot fails
-- (serialization_failure): the caller's snapshot would predate that refresh, so the run is refused
-- with a message saying so rather than computed from stale state.
--
-- drop: drop function if exists flywheel.wait_for_refresh_lock(boolean); drop function if exists flywheel.take_refresh_lock()
create function flywheel.take_refresh_lock()
returns void
language plpgsql
volatile
-- lock_timeout is listed so that the value set inside ends with the function.
set search_path = pg_catalog, pg_temp
set lock_timeout = 0
as $$
begin
    perform set_config('lock_timeout', flywheel.setting_milliseconds('refresh_lock_wait'), true);
    update flywheel.refresh_lock set holder_pid = pg_backend_pid(), taken_at = clock_timestamp();
exception
    when lock_not_available then
        raise exception 'another flywheel refresh is running and did not finish within refresh_lock_wait (%)',
                flywheel.setting('refresh_lock_wait') #>> '{}'
            using errcode = 'lock_not_available',
                  hint = 'Let it finish (see flywheel.refresh_lock.holder_pid in pg_stat_activity, and flywheel.refresh_log), or raise the refresh_lock_wait setting.';
    when serialization_failure then
        raise exception 'another flywheel refresh committed after this transaction''s snapshot was taken: run the refresh again'
            using errcode = 'serialization_failure',
                  hint = 'flywheel-sync refresh and CALL flywheel.run_refresh() wait for the running refresh before they take their snapshot.';
end
$$;

comment on function flywheel.take_refresh_lock() is
    'Takes the refresh''s row lock (flywheel.refresh_lock) for the transaction, waiting up to refresh_lock_wait; internal to flywheel.refresh()';

create function flywheel.wait_for_refresh_lock("full" boolean default false)
returns jsonb
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    started timestamptz := clock_timestamp();
    failure_message text;
    failure_state text;
begin
    perform flywheel.require_writable();
    begin
        perform flywheel.take_refresh_lock();
    -- query_canceled too: a statement_timeout of the caller's role or database cutting the wait
    -- short is a failed run like the wait giving up.
    exception when others or query_canceled then
        get stacked diagnostics failure_message = message_text, failure_state = returned_sqlstate;
        return flywheel.record_refresh_failure(started, null, case when "full" then 'full' else 'incremental' end,
                                               null, '[]', failure_message, failure_state, null);
    end;
    return null;
end
$$;

comment on function flywheel.wait_for_refresh_lock(boolean) is
    'Waits (up to refresh_lock_wait) until no flywheel refresh runs, for callers that then commit and refresh in a new snapshot. NULL when free; else the refresh_log row recording that the wait gave up';
