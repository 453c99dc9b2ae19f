-- flywheel.history(range_from, range_to, interval_ms): the dashboard's history rows for a range, from
-- the coarsest tier that still draws one point per $__interval; flywheel.history_tier() says which.
--
-- Answers: Grafana's time-series panels (flywheel_sync/outputs/grafana.py), which call it with $__timeFrom(),
-- $__timeTo() and $__interval_ms and bin its rows by $__interval, at any range in about the same
-- time: a panel about 1,000 px wide reads at most a few thousand rows whatever the range (issue 13).
-- The tier is the coarsest one no coarser than interval_ms that still holds range_from (its retention
-- setting, measured from now()): raw snapshots below a 1-minute interval, then the buckets of 1
-- minute, 5 minutes, 1 hour, 6 hours and 12 hours (flywheel.history_tiers); when none of those holds
-- range_from, the finest coarser one that does. Every tier gives the same columns, so an average (sum
-- over samples), least or greatest over a $__interval bin is the same from whichever tier it came,
-- where the tiers hold the same snapshots and the bin is whole buckets (Grafana's rounded intervals
-- always are: flywheel.record_history).
--
-- history() is plain SQL without SET search_path (every name is qualified), so the planner inlines it
-- into the panel's query: the raw branch is guarded by a one-time test of the tier, the other reads
-- only the chosen width through the index of flywheel.history_buckets, and only the columns the
-- panel aggregates are carried. A SET clause or SECURITY DEFINER would stop the inlining and return
-- every column of every row through a tuplestore. history_tier() is PL/pgSQL: called twice a
-- query, with its plan cached, rather than inlined into every panel's plan.
--
-- When changing this, also change: flywheel.record_history and flywheel.history_buckets (the
-- columns), the panels (flywheel_sync/outputs/grafana.py), docs/grafana.md.
--
-- drop: drop function if exists flywheel.history(timestamptz, timestamptz, bigint); drop function if exists flywheel.history_tier(timestamptz, bigint)
create function flywheel.history_tier(range_from timestamptz, interval_ms bigint)
returns interval
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
    chosen interval;
begin
    with tier as (
        select interval '0' as bucket_width,
               (flywheel.setting('history_raw_retention') #>> '{}')::interval as retention
        union all
        select bucket_width, retention from flywheel.history_tiers()
    )
    select coalesce(
        -- The coarsest tier no coarser than the interval that holds the range's start ...
        (select bucket_width from tier
         where bucket_width <= interval_ms * interval '1 millisecond' and range_from >= now() - retention
         order by bucket_width desc limit 1),
        -- ... else the finest that holds it, else the coarsest.
        (select bucket_width from tier where range_from >= now() - retention order by bucket_width limit 1),
        (select max(bucket_width) from tier))
    into chosen;
    return chosen;
end
$$;

comment on function flywheel.history_tier(timestamptz, bigint) is
    'The bucket width of the history tier flywheel.history() reads for a range starting at range_from drawn at interval_ms; 0 for the raw snapshots';

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
    where flywheel.history_tier(range_from, interval_ms) = interval '0'
      and computed_at between range_from and range_to
    union all
    select bucket_start, snapshots, execution_success_rate_sum, execution_success_rate_samples,
           km_vectorized_rate_sum, alertname_null_rate_sum,
           playbook_count_min, playbooks_invalid_max, km_unvectorized_count_max, incidents_stuck_max, type4_count_max,
           count_1h_max, today_processed_max, execution_success_today_max, flywheel_conversions_today_max,
           refresh_ms_max
    from flywheel.history_buckets
    where bucket_width = flywheel.history_tier(range_from, interval_ms)
      and bucket_start between range_from and range_to
$$;

comment on function flywheel.history(timestamptz, timestamptz, bigint) is
    'The history rows from range_from to range_to of the tier flywheel.history_tier() picks for interval_ms (Grafana''s $__timeFrom(), $__timeTo(), $__interval_ms): one per snapshot or bucket, with the sums, samples, least and greatest values the time-series panels aggregate (and the slowest refresh)';
