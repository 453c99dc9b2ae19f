-- flywheel.refresh(as_of, full): compute every metric, reading only what changed since the last refresh.
--
-- Answers: nothing by itself; it writes what everything else reads. Called by `flywheel-sync
-- refresh` (every minute), `flywheel-sync refresh --full`, cron, systemd or pg_cron. In one
-- transaction, so a reader (Grafana) sees the old results or the new, never a mix, and never waits,
-- it runs these steps, each a function of its own (docs/refresh.md, "The steps"), and records each in
-- refresh_log.steps:
--   (before)          flywheel.refresh_mode: incremental, or full and why (refresh_log.mode_reason);
--                     flywheel.refresh_reads: which rows of each source table it reads
--   daily_incidents   full: refresh_incidents_full; incremental: refresh_incidents_incremental
--   daily_executions  refresh_executions_full / refresh_executions_incremental (with recent_executions)
--   daily_knowledge   refresh_knowledge_full / refresh_knowledge_incremental
--   tracked_rows      full only: rebuild_tracked_rows (tracked_* and the watermarks)
--   active_incidents  count_active_incidents: the stuck and TYPE-4 counts (flywheel.stuck_counts)
--   snapshot          write_snapshot: the snapshots row, insert ... select from the metric definitions
--                     of sql/metrics/, and the materialized view current_flow refreshed concurrently;
--                     save_refresh_state (where the next run starts), flywheel.record_history (the
--                     history tiers, pruned), refresh_log and sync_log pruned after `retention`
-- The metrics' definitions are the functions of sql/metrics/ (docs/metrics.md names each one's).
-- The rollups' full definitions are plain queries over the source (daily_incidents_from_source,
-- daily_executions_from_source, recent_executions_from_source, daily_knowledge_from_source); the
-- full steps write them, and the incremental steps keep the rollups equal to them.
--
-- Each source table is read through the subquery of the rows the refresh can use
-- (flywheel.usable_rows_sql): a row with a NULL, duplicated or over-long key, an over-long
-- notification_type or a created_at outside 1900..9999 is skipped, and counted per table and reason in
-- refresh_log.unusable (over every row when full, over the rows read when incremental). The steps get
-- the run's context as a flywheel.refresh_run.
--
-- Snapshot: run it in one REPEATABLE READ transaction (the CLI does; so does CALL flywheel.run_refresh(),
-- which pg_cron schedules as docs/refresh.md's recipe says). Under READ COMMITTED each statement reads its
-- own snapshot, so a change committed between two of them can leave a drift until the next full run;
-- refresh_log.mode_reason notes it.
--
-- Locks: only the ACCESS SHARE of a plain SELECT on source tables, with lock_timeout set to the
-- refresh_lock_timeout setting so it gives up rather than queue behind DDL. One refresh at a time:
-- the row lock of flywheel.refresh_lock (flywheel.take_refresh_lock), held to the end of the
-- transaction and waited for up to refresh_lock_wait; no role but the functions' owner can take it.
-- The steps are SECURITY INVOKER: they run as this function's owner, flywheel_owner, with its settings.
--
-- as_of is the metrics' clock ("now" of metrics.md); it defaults to the transaction's start and is
-- refused beyond now() + 5 minutes or before now() - 100 years (flywheel.metrics_clock).
--
-- Returns the refresh_log row as jsonb (status ok or failed). Every failure after the start is
-- recorded in refresh_log with its SQLSTATE and its cause named (flywheel.record_refresh_failure),
-- raised as a WARNING, and returned with status failed; nothing else of that run stays. On a standby
-- or in a read-only transaction it raises read_only_sql_transaction with one line
-- (flywheel.require_writable). docs/refresh.md lists what cannot be recorded and where it shows.
--
-- When changing this, also change: docs/refresh.md, docs/performance.md.
--
-- drop: drop function if exists flywheel.refresh(timestamptz, boolean)
create function flywheel.refresh(as_of timestamptz default null, "full" boolean default false)
returns jsonb
language plpgsql
volatile
security definer
-- lock_timeout is listed so that the values set inside end with the function, not the caller's transaction.
set search_path = pg_catalog, pg_temp
set lock_timeout = 0
-- JIT compiles the plan of every statement whose estimated cost passes jit_above_cost: with the
-- defaults of Debian's PostgreSQL 15 (jit = on, llvmjit installed) that turned a 100 ms routine
-- refresh into 4 s (issue 15), compiling plans that then read a few hundred rows through indexes.
-- The steps it calls inherit it.
set jit = off
as $$
declare
    started timestamptz := clock_timestamp();
    step_started timestamptz := clock_timestamp();
    steps jsonb := '[]';
    run flywheel.refresh_run;
    state flywheel.refresh_state;
    -- What each step returned: its refresh_log entry, and what later steps need.
    incidents record;
    executions record;
    knowledge record;
    tracked record;
    active record;
    stuck_changed bigint;
    type4_changed bigint;
    metrics_now timestamptz;
    mode text;
    mode_reason text;
    drift jsonb;
    unusable jsonb;
    log_row flywheel.refresh_log;
    failure_message text;
    failure_state text;
    failure_detail text;
    failure jsonb;
begin
    -- On a standby nothing can be written, a failure included: the one line a DBA needs instead.
    perform flywheel.require_writable();
    begin
        perform flywheel.take_refresh_lock();
        metrics_now := flywheel.metrics_clock(as_of);
        run.started := started;
        run.metrics_now := metrics_now;
        run.zone := flywheel.setting('timezone') #>> '{}';
        run.source_schema := flywheel.setting('source_schema') #>> '{}';
        perform set_config('lock_timeout', flywheel.setting_milliseconds('refresh_lock_timeout'), true);
        -- Watermarks never pass it (flywheel.clock_ceiling): rows from the future are read every run.
        run.ceiling := flywheel.clock_ceiling();
        select * into state from flywheel.refresh_state;
        -- A watermark past the ceiling (written before release 0004) is read as the ceiling.
        state.incidents_watermark := case when state.incidents_watermark > run.ceiling then run.ceiling else state.incidents_watermark end;
        state.executions_watermark := case when state.executions_watermark > run.ceiling then run.ceiling else state.executions_watermark end;
        state.knowledge_watermark := case when state.knowledge_watermark > run.ceiling then run.ceiling else state.knowledge_watermark end;
        run.lookback := coalesce(state.lookback, interval '10 minutes');
        select * into mode, mode_reason, run.tracking
          from flywheel.refresh_mode(state, "full", run.zone, run.source_schema, metrics_now);
        run := flywheel.refresh_reads(run, state, mode = 'incremental');

        if mode = 'full' then
            select * into incidents from flywheel.refresh_incidents_full(run);
            steps := steps || flywheel.timed_step(incidents.step, step_started);
            step_started := clock_timestamp();
            select * into executions from flywheel.refresh_executions_full(run);
            steps := steps || flywheel.timed_step(executions.step, step_started);
            step_started := clock_timestamp();
            select * into knowledge from flywheel.refresh_knowledge_full(run);
            steps := steps || flywheel.timed_step(knowledge.step, step_started);
            step_started := clock_timestamp();
            -- A drift is what the incremental runs missed; after a settings change or a run that
            -- could not track changes, the old rollups were another computation, not a drift.
            if not (state is null or state.timezone is distinct from run.zone
                    or state.source_schema is distinct from run.source_schema) then
                drift := jsonb_build_object('daily_incidents', incidents.drift, 'daily_executions', executions.drift,
                                            'daily_knowledge', knowledge.drift);
            end if;
            select * into tracked from flywheel.rebuild_tracked_rows(run);
            steps := steps || flywheel.timed_step(tracked.step, step_started);
            step_started := clock_timestamp();
            unusable := jsonb_build_object('incidents', incidents.unusable, 'auto_repair_executions', executions.unusable,
                                           'knowledge_entries', knowledge.unusable);
        else
            select * into incidents from flywheel.refresh_incidents_incremental(run, state);
            steps := steps || flywheel.timed_step(incidents.step, step_started);
            step_started := clock_timestamp();
            select * into executions from flywheel.refresh_executions_incremental(run, state);
            steps := steps || flywheel.timed_step(executions.step, step_started);
            step_started := clock_timestamp();
            select * into knowledge from flywheel.refresh_knowledge_incremental(run, state);
            steps := steps || flywheel.timed_step(knowledge.step, step_started);
            step_started := clock_timestamp();
            select incidents.watermark as incidents_watermark, executions.watermark as executions_watermark,
                   knowledge.watermark as knowledge_watermark
              into tracked;
            stuck_changed := incidents.stuck_changed;
            type4_changed := incidents.type4_changed;
            -- The rows skipped among the rows read (timed with the active_incidents step).
            unusable := jsonb_build_object(
                'incidents', flywheel.unusable_rows(run.source_schema, 'incidents', run.incidents_reason, run.incidents_read),
                'auto_repair_executions', flywheel.unusable_rows(run.source_schema, 'auto_repair_executions',
                                                                 run.executions_reason, run.executions_read),
                'knowledge_entries', flywheel.unusable_rows(run.source_schema, 'knowledge_entries', run.knowledge_reason,
                                                            run.knowledge_read));
        end if;
        unusable := nullif(jsonb_strip_nulls(unusable), '{}');

        select * into active from flywheel.count_active_incidents(run, stuck_changed, type4_changed);
        steps := steps || flywheel.timed_step(active.step, step_started);
        step_started := clock_timestamp();
        perform flywheel.write_snapshot(metrics_now, started, incidents.undated_incidents,
                                        incidents.undated_alertname_missing, incidents.undated_investigating,
                                        incidents.undated_mitigating, knowledge.undated_knowledge,
                                        knowledge.undated_unvectorized, active.incidents_stuck, active.type4_count,
                                        executions.recent_executions_from, run.incidents_rows, run.executions_rows,
                                        run.knowledge_rows);
        perform flywheel.save_refresh_state(run, mode = 'full', tracked.incidents_watermark, tracked.executions_watermark,
                                            tracked.knowledge_watermark, executions.recent_executions_from);
        -- History in tiers (issue 13): the snapshot folded into its bucket of every tier, and the
        -- snapshots and each tier pruned after their own retention settings.
        perform flywheel.record_history(metrics_now);
        -- Retention, measured from the metrics' clock so that a back-fill never prunes the present.
        delete from flywheel.refresh_log where started_at < metrics_now - (flywheel.setting('retention') #>> '{}')::interval;
        delete from flywheel.sync_log where started_at < metrics_now - (flywheel.setting('retention') #>> '{}')::interval;
        steps := steps || flywheel.timed_step(jsonb_build_object('step', 'snapshot', 'rows', 1), step_started);
    -- query_canceled too (OTHERS leaves it out): a statement_timeout is a failure to record like any other.
    exception when others or query_canceled then
        get stacked diagnostics failure_message = message_text, failure_state = returned_sqlstate,
                                failure_detail = pg_exception_detail;
        failure := flywheel.record_refresh_failure(started, metrics_now, coalesce(mode, 'full'), mode_reason, steps,
                                                   failure_message, failure_state, failure_detail);
        raise warning 'flywheel refresh failed: %', failure ->> 'error'
            using hint = 'See flywheel.refresh_log; flywheel-sync check tells whether the source tables are as expected.';
        return failure;
    end;

    insert into flywheel.refresh_log (started_at, finished_at, computed_at, mode, mode_reason, status, steps, drift, unusable)
    values (started, clock_timestamp(), metrics_now, mode, mode_reason, 'ok', steps, drift, unusable)
    returning * into log_row;
    return to_jsonb(log_row);
end
$$;

comment on function flywheel.refresh(timestamptz, boolean) is
    'Computes every flywheel metric into snapshots, the daily rollups and current_flow, in one transaction; one at a time (the row lock of flywheel.refresh_lock); source rows it cannot use are skipped and counted in refresh_log.unusable. Incremental (only rows changed since the last run) unless full => true or a full run is needed (refresh_log.mode_reason says why). Returns the refresh_log row as jsonb. as_of: the metrics'' clock, default now()';
