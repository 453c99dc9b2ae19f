-- flywheel.refresh_knowledge_full(run): the full refresh's knowledge step -- flywheel.daily_knowledge
-- recomputed from all history, and what that corrected.
--
-- Answers, for flywheel.refresh() (its daily_knowledge step when full; nobody else calls it): writes
-- daily_knowledge as flywheel.daily_knowledge_from_source defines it, deletes the days no entry is in
-- any more, and returns the step's refresh_log entry (rows written), the drift (days that differed,
-- sum of absolute differences per count), the unusable rows by reason (counted only when the scan
-- found any, see refresh_incidents_full) and the undated entries' counts, which the totals add.
--
-- When changing this, also change: flywheel.refresh_knowledge_incremental, docs/refresh.md.
--
-- drop: drop function if exists flywheel.refresh_knowledge_full(flywheel.refresh_run)
create function flywheel.refresh_knowledge_full(run flywheel.refresh_run, out step jsonb, out drift jsonb,
                                                out unusable jsonb, out undated_knowledge bigint,
                                                out undated_unvectorized bigint)
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
        execute format('select min(created_at), max(created_at) from %s as entries', run.knowledge_rows)
           into days_from, days_to;
    end if;
    execute format('create temp table fresh_knowledge on commit drop as'
                   ' select * from flywheel.daily_knowledge_from_source(%L, %L, %L, %L, %L)',
                   run.source_schema, run.zone, run.knowledge_reason,
                   days_from, days_to);
    if exists (select from pg_temp.fresh_knowledge where day = '-infinity') then
        unusable := flywheel.unusable_rows(run.source_schema, 'knowledge_entries', run.knowledge_reason, null);
    end if;
    execute $sql$
        with fresh as (
            select * from pg_temp.fresh_knowledge where day is distinct from '-infinity'
        ), compared as (
            select (fresh.entries_created, fresh.entries_unvectorized)
                   is distinct from (kept.entries_created, kept.entries_unvectorized) as differs,
                   abs(coalesce(fresh.entries_created, 0) - coalesce(kept.entries_created, 0)) as created,
                   abs(coalesce(fresh.entries_unvectorized, 0) - coalesce(kept.entries_unvectorized, 0)) as unvectorized
            from (select * from fresh where day is not null) as fresh
            full join flywheel.daily_knowledge as kept using (day)
        ), removed as (
            delete from flywheel.daily_knowledge as kept
            where not exists (select from fresh where fresh.day = kept.day)
            returning 1
        ), written as (
            insert into flywheel.daily_knowledge (day, day_start, entries_created, entries_unvectorized, refreshed_at)
            select day, day::timestamp at time zone $1, entries_created, entries_unvectorized, $2
            from fresh
            where day is not null
            on conflict (day) do update set
                day_start = excluded.day_start, entries_created = excluded.entries_created,
                entries_unvectorized = excluded.entries_unvectorized, refreshed_at = excluded.refreshed_at
            returning 1
        )
        select coalesce((select entries_created from fresh where day is null), 0),
               coalesce((select entries_unvectorized from fresh where day is null), 0),
               (select count(*) from written) + (select count(*) from removed),
               (select jsonb_build_object('days', count(*) filter (where differs),
                                          'entries_created', coalesce(sum(created), 0),
                                          'entries_unvectorized', coalesce(sum(unvectorized), 0))
                from compared)
    $sql$
    using run.zone, run.metrics_now
    into undated_knowledge, undated_unvectorized, rows_written, drift;
    drop table pg_temp.fresh_knowledge;
    step := jsonb_build_object('step', 'daily_knowledge', 'rows', rows_written);
end
$$;

comment on function flywheel.refresh_knowledge_full(flywheel.refresh_run) is
    'For flywheel.refresh(), full: daily_knowledge rewritten from daily_knowledge_from_source; returns the step''s refresh_log entry, the drift corrected, the unusable entries by reason and the undated entries'' counts';
