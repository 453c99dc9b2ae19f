-- flywheel.refresh_incidents_full(run): the full refresh's incidents step -- flywheel.daily_incidents
-- recomputed from all history, and what that corrected.
--
-- Answers, for flywheel.refresh() (its daily_incidents step when full; nobody else calls it): writes
-- daily_incidents as flywheel.daily_incidents_from_source defines it, deletes the days no incident is
-- in any more, and returns the step's refresh_log entry (rows written), the drift (per count, the
-- days that differed and the sum of absolute differences), the unusable rows by reason and the
-- undated incidents' counts (day NULL of the definition, which the totals add).
--
-- The pass is a statement of its own that writes only a temporary table of a few hundred rows
-- (measured faster than one statement that also compares and writes the rollup), so it may run in
-- parallel workers. Every row is read once: an unusable one lands in day -infinity, and only when that
-- day holds any are they counted by reason (a second pass to count them cost 1.1-1.5 s a table at M).
-- The data's range of created_at, read through the index when there is one, bounds the day offsets
-- (the definition keeps them within decades of now, as it does for a DBA's call without a range).
--
-- When changing this, also change: flywheel.refresh_incidents_incremental, docs/refresh.md.
--
-- drop: drop function if exists flywheel.refresh_incidents_full(flywheel.refresh_run)
create function flywheel.refresh_incidents_full(run flywheel.refresh_run, out step jsonb, out drift jsonb,
                                                out unusable jsonb, out undated_incidents bigint,
                                                out undated_alertname_missing bigint, out undated_investigating bigint,
                                                out undated_mitigating bigint)
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
        execute format('select min(created_at), max(created_at) from %s as incidents', run.incidents_rows)
           into days_from, days_to;
    end if;
    -- A utility statement takes no parameters: the arguments are literals.
    execute format('create temp table fresh_incidents on commit drop as'
                   ' select * from flywheel.daily_incidents_from_source(%L, %L, %L, %L, %L)',
                   run.source_schema, run.zone, run.incidents_reason,
                   days_from, days_to);
    if exists (select from pg_temp.fresh_incidents where day = '-infinity') then
        unusable := flywheel.unusable_rows(run.source_schema, 'incidents', run.incidents_reason, null);
    end if;
    execute $sql$
        with fresh as (
            select * from pg_temp.fresh_incidents where day is distinct from '-infinity'
        ), compared as (
            select (fresh.incidents_created, fresh.alertname_missing, fresh.status_investigating,
                    fresh.status_mitigating, fresh.status_resolved, fresh.status_closed, fresh.status_other,
                    fresh.execution_success)
                   is distinct from
                   (kept.incidents_created, kept.alertname_missing, kept.status_investigating,
                    kept.status_mitigating, kept.status_resolved, kept.status_closed, kept.status_other,
                    kept.execution_success) as differs,
                   abs(coalesce(fresh.incidents_created, 0) - coalesce(kept.incidents_created, 0)) as created,
                   abs(coalesce(fresh.alertname_missing, 0) - coalesce(kept.alertname_missing, 0)) as missing,
                   abs(coalesce(fresh.status_investigating, 0) - coalesce(kept.status_investigating, 0))
                   + abs(coalesce(fresh.status_mitigating, 0) - coalesce(kept.status_mitigating, 0))
                   + abs(coalesce(fresh.status_resolved, 0) - coalesce(kept.status_resolved, 0))
                   + abs(coalesce(fresh.status_closed, 0) - coalesce(kept.status_closed, 0))
                   + abs(coalesce(fresh.status_other, 0) - coalesce(kept.status_other, 0)) as statuses,
                   abs(coalesce(fresh.execution_success, 0) - coalesce(kept.execution_success, 0)) as successes
            from (select * from fresh where day is not null) as fresh
            full join flywheel.daily_incidents as kept using (day)
        ), removed as (
            delete from flywheel.daily_incidents as kept
            where not exists (select from fresh where fresh.day = kept.day)
            returning 1
        ), written as (
            insert into flywheel.daily_incidents
                (day, day_start, incidents_created, alertname_missing, status_investigating, status_mitigating,
                 status_resolved, status_closed, status_other, execution_success, refreshed_at)
            select day, day::timestamp at time zone $1, incidents_created, alertname_missing,
                   status_investigating, status_mitigating, status_resolved, status_closed, status_other,
                   execution_success, $2
            from fresh
            where day is not null
            on conflict (day) do update set
                day_start = excluded.day_start, incidents_created = excluded.incidents_created,
                alertname_missing = excluded.alertname_missing,
                status_investigating = excluded.status_investigating,
                status_mitigating = excluded.status_mitigating, status_resolved = excluded.status_resolved,
                status_closed = excluded.status_closed, status_other = excluded.status_other,
                execution_success = excluded.execution_success, refreshed_at = excluded.refreshed_at
            returning 1
        )
        select coalesce((select incidents_created from fresh where day is null), 0),
               coalesce((select alertname_missing from fresh where day is null), 0),
               coalesce((select status_investigating from fresh where day is null), 0),
               coalesce((select status_mitigating from fresh where day is null), 0),
               (select count(*) from written) + (select count(*) from removed),
               (select jsonb_build_object('days', count(*) filter (where differs),
                                          'incidents_created', coalesce(sum(created), 0),
                                          'alertname_missing', coalesce(sum(missing), 0),
                                          'statuses', coalesce(sum(statuses), 0),
                                          'execution_success', coalesce(sum(successes), 0))
                from compared)
    $sql$
    using run.zone, run.metrics_now
    into undated_incidents, undated_alertname_missing, undated_investigating, undated_mitigating,
         rows_written, drift;
    drop table pg_temp.fresh_incidents;
    step := jsonb_build_object('step', 'daily_incidents', 'rows', rows_written);
end
$$;

comment on function flywheel.refresh_incidents_full(flywheel.refresh_run) is
    'For flywheel.refresh(), full: daily_incidents rewritten from daily_incidents_from_source; returns the step''s refresh_log entry, the drift corrected, the unusable incidents by reason and the undated incidents'' counts';
