-- flywheel.refresh_executions_incremental(run, state): the routine refresh's executions step --
-- flywheel.daily_executions and flywheel.recent_executions changed by the executions created since
-- the last run, and the tracked executions kept.
--
-- Answers, for flywheel.refresh() (its daily_executions step when incremental; nobody else calls
-- it): reads the executions created past state.executions_watermark less the lookback (through the
-- created_at index), and the tracked ones (flywheel.tracked_executions) by key, and changes the day
-- rollup and the 10-minute buckets by the difference between each row now and as counted, so that
-- they stay what flywheel.daily_executions_from_source and recent_executions_from_source compute
-- (tests/test_incremental.py compares them). Rows are rarely changed afterwards; a change after the
-- lookback is the full run's to see. Buckets older than 8 days are dropped. Returns the step's
-- refresh_log entry (rows written, rows read), the new watermark (never past run.ceiling) and where
-- the buckets now start.
--
-- When changing this, also change: flywheel.executions_from_source (the counts' definition),
-- flywheel.rebuild_tracked_rows, docs/refresh.md.
--
-- drop: drop function if exists flywheel.refresh_executions_incremental(flywheel.refresh_run, flywheel.refresh_state)
create function flywheel.refresh_executions_incremental(run flywheel.refresh_run, state flywheel.refresh_state,
                                                        out step jsonb, out watermark timestamptz,
                                                        out recent_executions_from timestamptz)
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    key_type text := (select format_type(atttypid, atttypmod) from pg_attribute
                      where attrelid = to_regclass(format('%I.auto_repair_executions', run.source_schema))
                        and attname = 'id');
    -- The buckets of recent_executions: 10 minutes from a fixed origin (executions_from_source).
    bucket constant interval := interval '10 minutes';
    bucket_origin constant timestamptz := timestamptz '2000-01-01 00:00:00+00';
    rows_read bigint;
    rows_written bigint;
begin

    -- Executions created since the watermark (less the lookback); rows are rarely changed
    -- afterwards, and a change after the lookback is the full run's to see.
    execute format($sql$
        with changed as (
            select id::text as key, created_at, (created_at at time zone $1)::date as day, success
            from %1$s as executions
            where created_at > $2
        ), probed as (
            select id::text as key, created_at, (created_at at time zone $1)::date as day, success
            from %1$s as executions
            where id = any(cast(array(
                select tracked.id from flywheel.tracked_executions as tracked
                where tracked.created_at > $2
                  and not exists (select from changed where changed.key = tracked.id)) as %2$s[]))
        ), seen as (
            select * from changed union all select * from probed
        ), gone as (
            select tracked.id as key from flywheel.tracked_executions as tracked
            where tracked.created_at > $2 and not exists (select from seen where seen.key = tracked.id)
        ), counted as (
            select * from flywheel.tracked_executions
            where id in (select key from seen union all select key from gone)
        ), differences as (
            select day, sum(executions) as executions, sum(successes) as successes
            from (
                select day, 1 as executions, (success is true)::int as successes from seen
                union all
                select day, -1, -(success is true)::int from counted
            ) as signed
            where day is not null
            group by day
            having (sum(executions), sum(successes)) <> (0, 0)
        ), final as (
            select differences.day, coalesce(kept.executions, 0) + differences.executions as executions,
                   coalesce(kept.successes, 0) + differences.successes as successes
            from differences left join flywheel.daily_executions as kept using (day)
        ), emptied as (
            delete from flywheel.daily_executions where day in (select day from final where executions = 0)
            returning 1
        ), written as (
            insert into flywheel.daily_executions (day, day_start, executions, successes, refreshed_at)
            select day, day::timestamp at time zone $1, executions, successes, $3
            from final where executions <> 0
            on conflict (day) do update set
                executions = excluded.executions, successes = excluded.successes, refreshed_at = excluded.refreshed_at
            returning 1
        ), bucket_differences as (
            select date_bin($7, created_at, $8) as bucket_start, sum(executions) as executions,
                   sum(successes) as successes
            from (
                select created_at, 1 as executions, (success is true)::int as successes from seen
                union all
                select created_at, -1, -(success is true)::int from counted
            ) as signed
            where created_at >= $6
            group by 1
            having (sum(executions), sum(successes)) <> (0, 0)
        ), buckets_written as (
            insert into flywheel.recent_executions as kept (bucket_start, executions, successes)
            select bucket_start, executions, successes from bucket_differences
            on conflict (bucket_start) do update set
                executions = kept.executions + excluded.executions, successes = kept.successes + excluded.successes
        ), watermark as (
            select case when greatest($5, max(created_at)) > $9 then $9 else greatest($5, max(created_at)) end as value
            from changed
        ), untracked as (
            delete from flywheel.tracked_executions as tracked
            where tracked.id in (select key from gone)
               or (tracked.created_at > $2 and tracked.created_at <= (select value from watermark) - $4)
        ), tracked as (
            insert into flywheel.tracked_executions (id, day, success, created_at)
            select key, day, success, created_at from seen
            where created_at > (select value from watermark) - $4
              and not exists (select from counted where counted.id = seen.key
                                and (counted.day, counted.success, counted.created_at)
                                    is not distinct from (seen.day, seen.success, seen.created_at))
            on conflict (id) do update set day = excluded.day, success = excluded.success, created_at = excluded.created_at
        )
        select (select value from watermark), (select count(*) from seen) + (select count(*) from gone),
               (select count(*) from written) + (select count(*) from emptied)
    $sql$, run.executions_rows, key_type)
    using run.zone, coalesce(state.executions_watermark - run.lookback, '-infinity'), run.metrics_now, run.lookback,
          state.executions_watermark, state.recent_executions_from, bucket, bucket_origin, run.ceiling
    into watermark, rows_read, rows_written;
    -- Buckets older than 8 days serve no window any more.
    recent_executions_from := greatest(state.recent_executions_from,
                                       date_bin(bucket, run.metrics_now - interval '8 days', bucket_origin));
    delete from flywheel.recent_executions where bucket_start < recent_executions_from;
    step := jsonb_build_object('step', 'daily_executions', 'rows', rows_written, 'read', rows_read);
end
$$;

comment on function flywheel.refresh_executions_incremental(flywheel.refresh_run, flywheel.refresh_state) is
    'For flywheel.refresh(), incremental: daily_executions and recent_executions changed by the executions created since the watermark (differences against tracked_executions) and tracked_executions kept; returns the step''s refresh_log entry, the new watermark and where the buckets start';
