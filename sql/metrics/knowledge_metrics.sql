-- flywheel.knowledge_metrics(): the knowledge (KM) metrics of metrics.md at a clock, as one row.
--
-- Answers "how are the KM metrics computed?" for a DBA: totals and the unvectorized backlog are
-- sums of flywheel.daily_knowledge (each day's entries created and those still without an
-- embedding) plus the entries whose created_at is NULL, which no day holds (counted by the refresh's
-- passes and given here); km_vectorized_rate is (total - unvectorized) / total, 0 without entries;
-- flywheel_conversions_today is the rollup days from as_of's local date (the timezone setting) on;
-- km_created_24h is the whole days after its first, partial day plus that day's rows of the
-- source from as_of - 24 hours on, read through the created_at index (flywheel.created_rows; the
-- range is widened by 3 hours past the next local midnight and the local date tested exactly, so a
-- change of UTC offset cannot move a row across it). flywheel.write_snapshot() stores the row.
--
-- When changing this, also change: docs/metrics.md, flywheel.snapshots' columns.
--
-- drop: drop function if exists flywheel.knowledge_metrics(timestamptz, bigint, bigint, text)
create function flywheel.knowledge_metrics(
    as_of timestamptz, undated_entries bigint, undated_unvectorized bigint, usable_entries text default null)
returns table (
    km_total bigint, km_unvectorized_count bigint, km_vectorized_rate double precision,
    km_created_24h bigint, flywheel_conversions_today bigint)
language sql
stable
begin atomic
    -- Materialized: the dates are computed once, not for every rollup day (flywheel.setting is a call).
    with local_day as materialized (
        select setting.zone, (as_of at time zone setting.zone)::date as today,
               ((as_of - interval '24 hours') at time zone setting.zone)::date as first_day
        from (select flywheel.setting('timezone') #>> '{}' as zone) as setting
    ), total as (
        select coalesce(sum(day.entries_created), 0) + undated_entries as entries,
               coalesce(sum(day.entries_unvectorized), 0) + undated_unvectorized as unvectorized,
               coalesce(sum(day.entries_created) filter (where day.day >= local_day.today), 0) as created_today,
               coalesce(sum(day.entries_created) filter (where day.day > local_day.first_day), 0) as created_after_first_day
        from flywheel.daily_knowledge as day, local_day
    )
    select total.entries, total.unvectorized,
           case when total.entries > 0 then (total.entries - total.unvectorized)::double precision / total.entries
                else 0 end,
           first_day.rows + total.created_after_first_day, total.created_today
    from total, local_day,
         flywheel.created_rows('knowledge_entries', as_of - interval '24 hours',
                               ((local_day.first_day + 1)::timestamp at time zone local_day.zone) + interval '3 hours',
                               local_day.first_day, local_day.zone, usable_rows => usable_entries) as first_day;
end;

comment on function flywheel.knowledge_metrics(timestamptz, bigint, bigint, text) is
    'The knowledge metrics at as_of (metrics.md): km_total and km_unvectorized_count from daily_knowledge plus the undated entries given, km_vectorized_rate, km_created_24h (whole days from the rollup, the first partial day from the source; usable_entries: the refresh''s subquery, NULL: the whole table) and flywheel_conversions_today';
