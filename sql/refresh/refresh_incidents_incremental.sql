-- flywheel.refresh_incidents_incremental(run, state): the routine refresh's incidents step --
-- flywheel.daily_incidents changed by what changed since the last run, and the tracked incidents kept.
--
-- Answers, for flywheel.refresh() (its daily_incidents step when incremental; nobody else calls it):
-- reads the incidents whose updated_at is past state.incidents_watermark less the lookback (through
-- the updated_at index) and changes the rollup so that it stays what
-- flywheel.daily_incidents_from_source would compute (the property test in tests/test_incremental.py
-- compares them). A row tracked before (flywheel.tracked_incidents: active incidents, anything
-- changed within the lookback) changes it by the difference between its state now and the state
-- counted; a row created past the watermark is added; any other changed row (an old incident updated
-- after the lookback) has its whole day recounted through the created_at index. A tracked row that
-- is gone is subtracted. Returns the step's refresh_log entry (rows written, rows read, days
-- recounted), the new watermark (never past run.ceiling), the undated incidents' counts and the
-- difference the changed rows made to the stuck and TYPE-4 counts (flywheel.stuck_counts).
--
-- When changing this, also change: flywheel.daily_incidents_from_source (the counts' definition),
-- flywheel.rebuild_tracked_rows, flywheel.stuck_counts, docs/refresh.md.
--
-- drop: drop function if exists flywheel.refresh_incidents_incremental(flywheel.refresh_run, flywheel.refresh_state)
create function flywheel.refresh_incidents_incremental(run flywheel.refresh_run, state flywheel.refresh_state,
                                                       out step jsonb, out watermark timestamptz,
                                                       out undated_incidents bigint, out undated_alertname_missing bigint,
                                                       out undated_investigating bigint, out undated_mitigating bigint,
                                                       out stuck_changed bigint, out type4_changed bigint)
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    -- The key's own type, so the look-up of tracked keys goes through the source's index on it.
    key_type text := (select format_type(atttypid, atttypmod) from pg_attribute
                      where attrelid = to_regclass(format('%I.incidents', run.source_schema)) and attname = 'incident_id');
    rows_read bigint;
    days_recounted bigint;
    rows_written bigint;
begin
    -- Incidents changed since the watermark (less the lookback), in one statement so one
    -- snapshot serves the rollup and the tracked rows. A tracked row with a recent updated_at
    -- that is not among them was deleted (or its updated_at went back): it is looked up by key.
    execute format($sql$
        with changed as (
            select incident_id::text as key, created_at, updated_at,
                   (created_at at time zone $1)::date as day, status,
                   alertname is null or btrim(alertname, E' \t\r\n') = '' as alertname_missing,
                   coalesce(outcome ->> 'execution_success' = 'true', false) as execution_success,
                   alertname, notification_type
            from %1$s as incidents
            where updated_at > $2
        ), probed as (
            select incident_id::text as key, created_at, updated_at,
                   (created_at at time zone $1)::date as day, status,
                   alertname is null or btrim(alertname, E' \t\r\n') = '' as alertname_missing,
                   coalesce(outcome ->> 'execution_success' = 'true', false) as execution_success,
                   alertname, notification_type
            from %1$s as incidents
            where incident_id = any(cast(array(
                select tracked.incident_id from flywheel.tracked_incidents as tracked
                where tracked.updated_at > $2
                  and not exists (select from changed where changed.key = tracked.incident_id)) as %2$s[]))
        ), seen as (
            select * from changed union all select * from probed
        ), gone as (
            select tracked.incident_id as key from flywheel.tracked_incidents as tracked
            where tracked.updated_at > $2 and not exists (select from seen where seen.key = tracked.incident_id)
        ), counted as (
            select * from flywheel.tracked_incidents
            where incident_id in (select key from seen union all select key from gone)
        ), recount_days as (
            -- Changed rows whose counted state is unknown and that were not created since the
            -- watermark: their day is counted again from the source.
            select distinct seen.day from seen
            where seen.day is not null and seen.created_at <= $2
              and not exists (select from counted where counted.incident_id = seen.key)
        ), differences as (
            select day, sum(created) as incidents_created, sum(missing) as alertname_missing,
                   sum(investigating) as status_investigating, sum(mitigating) as status_mitigating,
                   sum(resolved) as status_resolved, sum(closed) as status_closed, sum(other) as status_other,
                   sum(success) as execution_success
            from (
                select day, 1 as created, alertname_missing::int as missing,
                       (status = 'investigating')::int as investigating, (status = 'mitigating')::int as mitigating,
                       (status = 'resolved')::int as resolved, (status = 'closed')::int as closed,
                       coalesce(status not in ('investigating', 'mitigating', 'resolved', 'closed'), true)::int as other,
                       execution_success::int as success
                from seen
                where seen.created_at > $2 or exists (select from counted where counted.incident_id = seen.key)
                union all
                select day, -1, -alertname_missing::int,
                       -(status = 'investigating')::int, -(status = 'mitigating')::int,
                       -(status = 'resolved')::int, -(status = 'closed')::int,
                       -coalesce(status not in ('investigating', 'mitigating', 'resolved', 'closed'), true)::int,
                       -execution_success::int
                from counted
            ) as signed
            where day is not null and day not in (select day from recount_days)
            group by day
            having (sum(created), sum(missing), sum(investigating), sum(mitigating), sum(resolved), sum(closed),
                    sum(other), sum(success)) <> (0, 0, 0, 0, 0, 0, 0, 0)
        ), recounted as (
            -- The day's rows through the created_at index; the range is widened by a few hours
            -- and the day tested exactly, so a midnight moved by daylight saving time is still right.
            select recount_days.day, count(*) as incidents_created,
                   count(*) filter (where alertname is null or btrim(alertname, E' \t\r\n') = '') as alertname_missing,
                   count(*) filter (where status = 'investigating') as status_investigating,
                   count(*) filter (where status = 'mitigating') as status_mitigating,
                   count(*) filter (where status = 'resolved') as status_resolved,
                   count(*) filter (where status = 'closed') as status_closed,
                   count(*) filter (where status is null
                                    or status not in ('investigating', 'mitigating', 'resolved', 'closed')) as status_other,
                   count(*) filter (where outcome ->> 'execution_success' = 'true') as execution_success
            -- A lateral subquery (offset 0 keeps it one) reads each day through the index; a
            -- join was planned as a scan of every incident, and of every partition (issue 15:
            -- one old incident updated cost up to 39 routine refreshes).
            from recount_days
            cross join lateral (
                select * from %1$s as incident
                where incident.created_at >= (recount_days.day::timestamp at time zone $1) - interval '3 hours'
                  and incident.created_at < ((recount_days.day + 1)::timestamp at time zone $1) + interval '3 hours'
                  and (incident.created_at at time zone $1)::date = recount_days.day
                offset 0
            ) as incident
            group by recount_days.day
        ), final as (
            select differences.day,
                   coalesce(kept.incidents_created, 0) + differences.incidents_created as incidents_created,
                   coalesce(kept.alertname_missing, 0) + differences.alertname_missing as alertname_missing,
                   coalesce(kept.status_investigating, 0) + differences.status_investigating as status_investigating,
                   coalesce(kept.status_mitigating, 0) + differences.status_mitigating as status_mitigating,
                   coalesce(kept.status_resolved, 0) + differences.status_resolved as status_resolved,
                   coalesce(kept.status_closed, 0) + differences.status_closed as status_closed,
                   coalesce(kept.status_other, 0) + differences.status_other as status_other,
                   coalesce(kept.execution_success, 0) + differences.execution_success as execution_success
            from differences left join flywheel.daily_incidents as kept using (day)
            union all
            select day, incidents_created, alertname_missing, status_investigating, status_mitigating,
                   status_resolved, status_closed, status_other, execution_success
            from recounted
        ), emptied as (
            delete from flywheel.daily_incidents
            where day in (select day from final where incidents_created = 0)
               or (day in (select day from recount_days) and day not in (select day from recounted))
            returning 1
        ), written as (
            insert into flywheel.daily_incidents
                (day, day_start, incidents_created, alertname_missing, status_investigating, status_mitigating,
                 status_resolved, status_closed, status_other, execution_success, refreshed_at)
            select day, day::timestamp at time zone $1, incidents_created, alertname_missing,
                   status_investigating, status_mitigating, status_resolved, status_closed, status_other,
                   execution_success, $3
            from final
            where incidents_created <> 0
            on conflict (day) do update set
                incidents_created = excluded.incidents_created, alertname_missing = excluded.alertname_missing,
                status_investigating = excluded.status_investigating,
                status_mitigating = excluded.status_mitigating, status_resolved = excluded.status_resolved,
                status_closed = excluded.status_closed, status_other = excluded.status_other,
                execution_success = excluded.execution_success, refreshed_at = excluded.refreshed_at
            returning 1
        ), watermark as (
            select case when greatest($5, max(updated_at)) > $7 then $7 else greatest($5, max(updated_at)) end as value
            from changed
        ), untracked as (
            -- Rows no longer worth remembering: gone, or neither active nor within the lookback.
            -- One IN over a union, so each key is looked up; three ORed conditions scanned
            -- every tracked row.
            delete from flywheel.tracked_incidents as tracked
            where tracked.incident_id in (
                      select key from gone
                      union all
                      select key from seen
                      where not coalesce(status = any($6), false)
                        and not updated_at > (select value from watermark) - $4
                      union all
                      select lapsed.incident_id from flywheel.tracked_incidents as lapsed
                      where lapsed.updated_at > $2 and lapsed.updated_at <= (select value from watermark) - $4
                        and not coalesce(lapsed.status = any($6), false)
                        and not exists (select from seen where seen.key = lapsed.incident_id))
        ), tracked as (
            insert into flywheel.tracked_incidents
                (incident_id, day, status, alertname_missing, execution_success, updated_at,
                 created_at, alertname, notification_type)
            select key, day, status, alertname_missing, execution_success, updated_at,
                   created_at, alertname, notification_type
            from seen
            where (coalesce(status = any($6), false) or updated_at > (select value from watermark) - $4)
              -- Rows read again within the lookback, unchanged, are not rewritten.
              and not exists (
                  select from counted
                  where counted.incident_id = seen.key
                    and (counted.day, counted.status, counted.alertname_missing, counted.execution_success,
                         counted.updated_at, counted.created_at, counted.alertname, counted.notification_type)
                        is not distinct from
                        (seen.day, seen.status, seen.alertname_missing, seen.execution_success,
                         seen.updated_at, seen.created_at, seen.alertname, seen.notification_type))
            on conflict (incident_id) do update set
                day = excluded.day, status = excluded.status, alertname_missing = excluded.alertname_missing,
                execution_success = excluded.execution_success, updated_at = excluded.updated_at,
                created_at = excluded.created_at, alertname = excluded.alertname,
                notification_type = excluded.notification_type
        )
        select (select value from watermark), (select count(*) from seen) + (select count(*) from gone),
               (select count(*) from recount_days),
               (select count(*) from written) + (select count(*) from emptied),
               -- The stuck and TYPE-4 counts' difference: every seen row that is investigating
               -- is tracked as seen, every counted one was tracked as counted.
               (select count(*) filter (where status = 'investigating' and created_at <= $8) from seen)
               - (select count(*) filter (where status = 'investigating' and created_at <= $8) from counted),
               (select count(*) filter (where status = 'investigating' and notification_type = 'TYPE-4') from seen)
               - (select count(*) filter (where status = 'investigating' and notification_type = 'TYPE-4')
                  from counted)
    $sql$, run.incidents_rows, key_type)
    using run.zone, coalesce(state.incidents_watermark - run.lookback, '-infinity'), run.metrics_now, run.lookback,
          state.incidents_watermark, array['investigating', 'mitigating'], run.ceiling, state.stuck_before
    into watermark, rows_read, days_recounted, rows_written, stuck_changed, type4_changed;
    execute format($sql$
        select count(*), count(*) filter (where alertname is null or btrim(alertname, E' \t\r\n') = ''),
               count(*) filter (where status = 'investigating'), count(*) filter (where status = 'mitigating')
        from %s as incidents where created_at is null
    $sql$, run.incidents_rows)
    into undated_incidents, undated_alertname_missing, undated_investigating, undated_mitigating;
    step := jsonb_build_object('step', 'daily_incidents', 'rows', rows_written, 'read', rows_read,
                               'days_recounted', days_recounted);
end
$$;

comment on function flywheel.refresh_incidents_incremental(flywheel.refresh_run, flywheel.refresh_state) is
    'For flywheel.refresh(), incremental: daily_incidents changed by the incidents updated since the watermark (differences against tracked_incidents, or their days recounted) and tracked_incidents kept; returns the step''s refresh_log entry, the new watermark, the undated incidents'' counts and the stuck and TYPE-4 counts'' differences';
