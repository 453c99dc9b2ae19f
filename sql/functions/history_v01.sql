-- flywheel.history(range_from, range_to, interval_ms): the dashboard's history rows for a range, from
-- the coarsest tier that still draws one point per $__interval; flywheel.history_tier() says which.
--
-- Answers: Grafana's time-series panels (flywheel_sync/grafana.py), which call it with $__timeFrom(),
-- $__timeTo() and $__interval_ms and bin its rows by $__interval, at any range in about the same
-- time: a panel reads at most a few thousand rows whatever the range (issue 13). The tier is the
-- coarsest one that is no coarser than interval_ms and still holds range_from (its retention
-- setting, measured from now()): raw snapshots below a 1-minute interval, the 1-minute tier below an
-- hour, else the 1-hour tier; a range that starts before a tier's retention goes to the next coarser
-- one. Every tier gives the same columns, so an average (sum over samples), least or greatest over a
-- $__interval bin is the same whichever tier it came from, where the tiers hold the same snapshots and
-- the bin is a whole number of the tier's buckets (the $__interval Grafana rounds to always is).
--
-- Both are plain SQL, without SET search_path (every name is qualified), so the planner inlines
-- history() into the panel's query: each branch of the union is guarded by the tier test, which the
-- executor runs once, and only the chosen tier is read, through its index on time, projecting only the
-- columns the panel aggregates. A SET clause or SECURITY DEFINER would stop the inlining and return
-- every column of every row through a tuplestore.
--
-- When changing this, also change: flywheel.record_history and the tier tables (the columns), the
-- panels (flywheel_sync/grafana.py), docs/grafana.md.
--
-- drop: drop function if exists flywheel.history(timestamptz, timestamptz, bigint); drop function if exists flywheel.history_tier(timestamptz, bigint)
create function flywheel.history_tier(range_from timestamptz, interval_ms bigint)
returns text
language sql
stable
return case
    when interval_ms < 60000
         and range_from >= now() - (select value #>> '{}' from flywheel.settings where key = 'history_raw_retention')::interval
        then 'raw'
    when interval_ms < 3600000
         and range_from >= now() - (select value #>> '{}' from flywheel.settings where key = 'history_minute_retention')::interval
        then 'minute'
    else 'hour'
end;

comment on function flywheel.history_tier(timestamptz, bigint) is
    'Which history tier flywheel.history() reads for a range starting at range_from drawn at interval_ms: raw, minute or hour';

create function flywheel.history(range_from timestamptz, range_to timestamptz, interval_ms bigint)
returns table (
    bucket_start timestamptz,
    snapshots integer,
    execution_success_rate_sum double precision,
    execution_success_rate_samples integer,
    km_vectorized_rate_sum double precision,
    alertname_null_rate_sum double precision,
    playbook_count_min bigint,
    playbooks_invalid_max bigint,
    km_unvectorized_count_max bigint,
    incidents_stuck_max bigint,
    type4_count_max bigint,
    count_1h_max bigint,
    today_processed_max bigint,
    execution_success_today_max bigint,
    flywheel_conversions_today_max bigint,
    refresh_ms_max double precision
)
language sql
stable
as $$
    select computed_at, 1,
           coalesce(execution_success_rate, 0), (execution_success_rate is not null)::integer,
           km_vectorized_rate, alertname_null_rate,
           playbook_count, playbooks_invalid, km_unvectorized_count, incidents_stuck, type4_count,
           count_1h, today_processed, execution_success_today, flywheel_conversions_today, refresh_ms
    from flywheel.snapshots
    where flywheel.history_tier(range_from, interval_ms) = 'raw'
      and computed_at between range_from and range_to
    union all
    select bucket_start, snapshots, execution_success_rate_sum, execution_success_rate_samples,
           km_vectorized_rate_sum, alertname_null_rate_sum,
           playbook_count_min, playbooks_invalid_max, km_unvectorized_count_max, incidents_stuck_max, type4_count_max,
           count_1h_max, today_processed_max, execution_success_today_max, flywheel_conversions_today_max,
           refresh_ms_max
    from flywheel.history_minute
    where flywheel.history_tier(range_from, interval_ms) = 'minute'
      and bucket_start between range_from and range_to
    union all
    select bucket_start, snapshots, execution_success_rate_sum, execution_success_rate_samples,
           km_vectorized_rate_sum, alertname_null_rate_sum,
           playbook_count_min, playbooks_invalid_max, km_unvectorized_count_max, incidents_stuck_max, type4_count_max,
           count_1h_max, today_processed_max, execution_success_today_max, flywheel_conversions_today_max,
           refresh_ms_max
    from flywheel.history_hour
    where flywheel.history_tier(range_from, interval_ms) = 'hour'
      and bucket_start between range_from and range_to
$$;

comment on function flywheel.history(timestamptz, timestamptz, bigint) is
    'The history rows from range_from to range_to of the tier flywheel.history_tier() picks for interval_ms (Grafana''s $__timeFrom(), $__timeTo(), $__interval_ms): one per snapshot, minute or hour, with the sums, samples, least and greatest values the time-series panels aggregate (and the slowest refresh)';
