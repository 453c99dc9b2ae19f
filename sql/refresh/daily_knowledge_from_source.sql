-- flywheel.daily_knowledge_from_source(source_schema, zone): the daily_knowledge rollup, computed from
-- the platform's knowledge_entries table over all history.
--
-- Answers: what flywheel.daily_knowledge must hold, for a DBA who checks it, for the full refresh
-- (flywheel.refresh_knowledge_full writes it) and for the test that the incremental refresh equals
-- it: per local day (zone) of created_at, the entries created and those not vectorized yet (embedding
-- NULL). Day NULL counts the entries whose created_at is NULL (the totals add them), day -infinity the
-- rows the refresh cannot use (flywheel.unusable_row_reason_sql, or reason_sql when the caller has it).
-- The scan is made cheap as daily_incidents_from_source's is (fixed day offsets from days_from ..
-- days_to, for speed only; a planner fence for parallel aggregation).
--
-- When changing this, also change: flywheel.refresh_knowledge_incremental (the same counts kept by
-- differences), docs/metrics.md.
--
-- drop: drop function if exists flywheel.daily_knowledge_from_source(text, text, text, timestamptz, timestamptz)
create function flywheel.daily_knowledge_from_source(source_schema text, zone text, reason_sql text default null,
                                                     days_from timestamptz default null,
                                                     days_to timestamptz default null)
returns table (day date, entries_created bigint, entries_unvectorized bigint)
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
begin
    return query execute format($sql$
        select (day_key at time zone 'UTC')::date as day, entries_created, entries_unvectorized
        from (
            select day_key, count(*) as entries_created, count(*) filter (where unvectorized) as entries_unvectorized
            from (select case when (%3$s) is null then %1$s else '-infinity'::timestamptz end as day_key,
                         embedding is null as unvectorized, clock_timestamp() as planner_fence
                  from %2$I.knowledge_entries as entries) as entry
            group by day_key
        ) as grouped
    $sql$, flywheel.local_day_key_sql('created_at', zone, greatest(days_from, now() - interval '30 years'),
                                      least(days_to, now() + interval '1 year')),
           source_schema, coalesce(reason_sql, flywheel.unusable_row_reason_sql(source_schema, 'knowledge_entries')));
end
$$;

comment on function flywheel.daily_knowledge_from_source(text, text, text, timestamptz, timestamptz) is
    'The definition of flywheel.daily_knowledge: per local day of created_at in zone, the knowledge entries of source_schema created and those without embedding; day NULL counts the undated entries, day -infinity the rows the refresh cannot use (reason_sql, default flywheel.unusable_row_reason_sql). days_from, days_to: the data''s range, for speed only';
