-- flywheel.incident_metrics(): the incident metrics of metrics.md at a clock, as one row.
--
-- Answers "how is each incident metric computed?" for a DBA: totals are sums of the daily rollup
-- (flywheel.daily_incidents, each day counting its incidents in their current status) plus the
-- incidents whose created_at is NULL, which no day holds; "today" is the rollup days from as_of's
-- local date (the timezone setting) on; count_1h reads its hour of the source through the created_at
-- index (flywheel.created_rows). incidents_stuck (investigating, created_at <= as_of - stuck_after)
-- and type4_count (investigating, notification_type TYPE-4) are counted by the refresh over the
-- tracked incidents and kept by difference in refresh_state (flywheel.stuck_counts): counting them
-- each run read the whole active set, so they come in as arguments, like the undated counts the
-- refresh's passes found. flywheel.write_snapshot() stores the row; call it ad hoc with
-- select * from flywheel.incident_metrics(now(), 0, 0, 0, 0, 0, 0).
--
-- When changing this, also change: docs/metrics.md (the definitions), flywheel.snapshots' columns.
--
-- drop: drop function if exists flywheel.incident_metrics(timestamptz, bigint, bigint, bigint, bigint, bigint, bigint, text)
create function flywheel.incident_metrics(
    as_of timestamptz,
    undated_incidents bigint, undated_alertname_missing bigint,
    undated_investigating bigint, undated_mitigating bigint,
    stuck bigint, type4 bigint,
    usable_incidents text default null)
returns table (
    incidents_total bigint, incidents_alertname_missing bigint, alertname_null_rate double precision,
    incidents_investigating bigint, incidents_mitigating bigint, incidents_stuck bigint, type4_count bigint,
    today_processed bigint, execution_success_today bigint, count_1h bigint)
language sql
stable
begin atomic
    -- Materialized: today is computed once, not for every rollup day (flywheel.setting is a call).
    with local_day as materialized (
        select (as_of at time zone (flywheel.setting('timezone') #>> '{}'))::date as today
    ), total as (
        select coalesce(sum(day.incidents_created), 0) + undated_incidents as incidents,
               coalesce(sum(day.alertname_missing), 0) + undated_alertname_missing as alertname_missing,
               coalesce(sum(day.status_investigating), 0) + undated_investigating as investigating,
               coalesce(sum(day.status_mitigating), 0) + undated_mitigating as mitigating,
               coalesce(sum(day.incidents_created) filter (where day.day >= local_day.today), 0) as created_today,
               coalesce(sum(day.execution_success) filter (where day.day >= local_day.today), 0) as successes_today
        from flywheel.daily_incidents as day, local_day
    )
    select total.incidents, total.alertname_missing,
           case when total.incidents > 0 then total.alertname_missing::double precision / total.incidents else 0 end,
           total.investigating, total.mitigating, stuck, type4,
           total.created_today, total.successes_today, last_hour.rows
    from total,
         flywheel.created_rows('incidents', as_of - interval '1 hour', usable_rows => usable_incidents) as last_hour;
end;

comment on function flywheel.incident_metrics(timestamptz, bigint, bigint, bigint, bigint, bigint, bigint, text) is
    'The incident metrics at as_of (metrics.md): whole-history totals from daily_incidents plus the undated incidents given, alertname_null_rate, active counts, processed and repaired today, count_1h from the source; incidents_stuck and type4_count as given (kept by flywheel.stuck_counts). usable_incidents: the refresh''s subquery of the source (NULL: the whole table)';
