-- flywheel.refresh_executions_full(run): the full refresh's executions step -- flywheel.daily_executions
-- and flywheel.recent_executions recomputed from all history, and what that corrected.
--
-- Answers, for flywheel.refresh() (its daily_executions step when full; nobody else calls it): writes
-- daily_executions and the 10-minute buckets of the last 8 days from one call of
-- flywheel.executions_from_source (their definitions' scan), deletes the days no execution is in any
-- more, and returns the step's refresh_log entry (rows written), the drift (days that differed, sum of
-- absolute differences per count), the unusable rows by reason and where the buckets start
-- (refresh_state.recent_executions_from). Undated executions count nowhere; unusable ones only among
-- the rows skipped, counted by reason only when the scan found any (see refresh_incidents_full).
--
-- When changing this, also change: flywheel.refresh_executions_incremental, docs/refresh.md.
--
-- drop: drop function if exists flywheel.refresh_executions_full(flywheel.refresh_run)
create function flywheel.refresh_executions_full(run flywheel.refresh_run, out step jsonb, out drift jsonb,
                                                 out unusable jsonb, out recent_executions_from timestamptz)
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    days_from timestamptz;
    days_to timestamptz;
    rows_written bigint;
begin
    if run.tracking then
        execute format('select min(created_at), max(created_at) from %s as executions', run.executions_rows)
           into days_from, days_to;
    end if;
    recent_executions_from := date_bin(interval '10 minutes', run.metrics_now - interval '8 days',
                                       timestamptz '2000-01-01 00:00:00+00');
    execute format('create temp table fresh_execution_groups on commit drop as'
                   ' select * from flywheel.executions_from_source(%L, %L, %L, %L, %L, %L)',
                   run.source_schema, run.zone, recent_executions_from, run.executions_reason,
                   days_from, days_to);
    if exists (select from pg_temp.fresh_execution_groups where day = '-infinity') then
        unusable := flywheel.unusable_rows(run.source_schema, 'auto_repair_executions', run.executions_reason, null);
    end if;
    delete from pg_temp.fresh_execution_groups where day is null or day = '-infinity';
    create temp table fresh_executions on commit drop as
    select fresh_execution_groups.day, sum(executions)::bigint as executions, sum(successes)::bigint as successes
    from pg_temp.fresh_execution_groups
    group by fresh_execution_groups.day;
    execute $sql$
        with fresh as (
            select * from pg_temp.fresh_executions
        ), compared as (
            select (fresh.executions, fresh.successes) is distinct from (kept.executions, kept.successes) as differs,
                   abs(coalesce(fresh.executions, 0) - coalesce(kept.executions, 0)) as executions,
                   abs(coalesce(fresh.successes, 0) - coalesce(kept.successes, 0)) as successes
            from fresh full join flywheel.daily_executions as kept using (day)
        ), removed as (
            delete from flywheel.daily_executions as kept
            where not exists (select from fresh where fresh.day = kept.day)
            returning 1
        ), written as (
            insert into flywheel.daily_executions (day, day_start, executions, successes, refreshed_at)
            select day, day::timestamp at time zone $1, executions, successes, $2 from fresh
            on conflict (day) do update set
                day_start = excluded.day_start, executions = excluded.executions,
                successes = excluded.successes, refreshed_at = excluded.refreshed_at
            returning 1
        )
        select (select count(*) from written) + (select count(*) from removed),
               (select jsonb_build_object('days', count(*) filter (where differs),
                                          'executions', coalesce(sum(executions), 0),
                                          'successes', coalesce(sum(successes), 0))
                from compared)
    $sql$
    using run.zone, run.metrics_now
    into rows_written, drift;
    drop table pg_temp.fresh_executions;
    delete from flywheel.recent_executions;
    insert into flywheel.recent_executions (bucket_start, executions, successes)
    select groups.bucket_start, sum(groups.executions), sum(groups.successes)
    from pg_temp.fresh_execution_groups as groups
    where groups.bucket_start is not null
    group by groups.bucket_start;
    drop table pg_temp.fresh_execution_groups;
    step := jsonb_build_object('step', 'daily_executions', 'rows', rows_written);
end
$$;

comment on function flywheel.refresh_executions_full(flywheel.refresh_run) is
    'For flywheel.refresh(), full: daily_executions and recent_executions rewritten from executions_from_source in one scan; returns the step''s refresh_log entry, the drift corrected, the unusable executions by reason and where the buckets start';
