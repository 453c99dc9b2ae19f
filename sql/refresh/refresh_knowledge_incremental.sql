-- flywheel.refresh_knowledge_incremental(run, state): the routine refresh's knowledge step --
-- flywheel.daily_knowledge changed by the entries created since the last run and by the backlog's
-- changes, and the tracked entries kept.
--
-- Answers, for flywheel.refresh() (its daily_knowledge step when incremental; nobody else calls it):
-- reads the entries created past state.knowledge_watermark less the lookback and the unvectorized
-- backlog (through its partial index); a tracked entry missing from both was vectorized or deleted,
-- and is looked up by key. Each changes the rollup by the difference between its state now and as
-- counted (flywheel.tracked_knowledge), an old entry changed untracked has its day recounted, so that
-- the rollup stays what flywheel.daily_knowledge_from_source computes (tests/test_incremental.py
-- compares them). Backlog entries tracked as counted and unchanged (settled) are matched once and left
-- out of the rest, so the work follows the backlog's changes, not its size. Returns the step's
-- refresh_log entry (rows written, rows read, days recounted), the new watermark (never past
-- run.ceiling) and the undated entries' counts.
--
-- When changing this, also change: flywheel.daily_knowledge_from_source (the counts' definition),
-- flywheel.rebuild_tracked_rows, docs/refresh.md.
--
-- drop: drop function if exists flywheel.refresh_knowledge_incremental(flywheel.refresh_run, flywheel.refresh_state)
create function flywheel.refresh_knowledge_incremental(run flywheel.refresh_run, state flywheel.refresh_state,
                                                       out step jsonb, out watermark timestamptz,
                                                       out undated_knowledge bigint, out undated_unvectorized bigint)
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    key_type text := (select format_type(atttypid, atttypmod) from pg_attribute
                      where attrelid = to_regclass(format('%I.knowledge_entries', run.source_schema)) and attname = 'id');
    rows_read bigint;
    days_recounted bigint;
    rows_written bigint;
begin

    -- Knowledge entries created since the watermark, and the unvectorized backlog (through its
    -- partial index): a tracked entry missing from both was vectorized or deleted, and is looked up.
    -- Backlog entries tracked as counted and unchanged (settled) are matched once and left
    -- out of the rest, so the work follows the backlog's changes, not its size (13.5 ms at L
    -- for a 2 600-entry backlog before, when every entry went through every step).
    execute format($sql$
        with backlog as (
            -- From the partial index alone (an index-only scan: the rows are wide).
            select id::text as key, created_at
            from %1$s as entries
            where embedding is null
        ), settled as (
            select tracked.id
            from flywheel.tracked_knowledge as tracked
            join backlog on backlog.key = tracked.id
            where tracked.unvectorized and tracked.created_at = backlog.created_at
              and not tracked.created_at > $2
        ), changed as (
            select id::text as key, created_at, (created_at at time zone $1)::date as day,
                   embedding is null as unvectorized
            from %1$s as entries
            where created_at > $2
            union
            select backlog.key, backlog.created_at, (backlog.created_at at time zone $1)::date, true
            from backlog
            where not exists (select from settled where settled.id = backlog.key)
        ), probed as (
            select id::text as key, created_at, (created_at at time zone $1)::date as day,
                   embedding is null as unvectorized
            from %1$s as entries
            where id = any(cast(array(
                select tracked.id from flywheel.tracked_knowledge as tracked
                where (tracked.unvectorized or tracked.created_at > $2)
                  and not exists (select from changed where changed.key = tracked.id)
                  and not exists (select from settled where settled.id = tracked.id)) as %2$s[]))
        ), seen as (
            select * from changed union all select * from probed
        ), gone as (
            select tracked.id as key from flywheel.tracked_knowledge as tracked
            where (tracked.unvectorized or tracked.created_at > $2)
              and not exists (select from seen where seen.key = tracked.id)
              and not exists (select from settled where settled.id = tracked.id)
        ), counted as (
            select * from flywheel.tracked_knowledge
            where id in (select key from seen union all select key from gone)
        ), recount_days as (
            select distinct seen.day from seen
            where seen.day is not null and seen.created_at <= $2
              and not exists (select from counted where counted.id = seen.key)
        ), differences as (
            select day, sum(created) as entries_created, sum(unvectorized) as entries_unvectorized
            from (
                select day, 1 as created, unvectorized::int as unvectorized from seen
                where seen.created_at > $2 or exists (select from counted where counted.id = seen.key)
                union all
                select day, -1, -unvectorized::int from counted
            ) as signed
            where day is not null and day not in (select day from recount_days)
            group by day
            having (sum(created), sum(unvectorized)) <> (0, 0)
        ), recounted as (
            select recount_days.day, count(*) as entries_created,
                   count(*) filter (where entry.embedding is null) as entries_unvectorized
            from recount_days
            cross join lateral (
                select * from %1$s as entry
                where entry.created_at >= (recount_days.day::timestamp at time zone $1) - interval '3 hours'
                  and entry.created_at < ((recount_days.day + 1)::timestamp at time zone $1) + interval '3 hours'
                  and (entry.created_at at time zone $1)::date = recount_days.day
                offset 0
            ) as entry
            group by recount_days.day
        ), final as (
            select differences.day,
                   coalesce(kept.entries_created, 0) + differences.entries_created as entries_created,
                   coalesce(kept.entries_unvectorized, 0) + differences.entries_unvectorized as entries_unvectorized
            from differences left join flywheel.daily_knowledge as kept using (day)
            union all
            select day, entries_created, entries_unvectorized from recounted
        ), emptied as (
            delete from flywheel.daily_knowledge
            where day in (select day from final where entries_created = 0)
               or (day in (select day from recount_days) and day not in (select day from recounted))
            returning 1
        ), written as (
            insert into flywheel.daily_knowledge (day, day_start, entries_created, entries_unvectorized, refreshed_at)
            select day, day::timestamp at time zone $1, entries_created, entries_unvectorized, $3
            from final where entries_created <> 0
            on conflict (day) do update set
                entries_created = excluded.entries_created, entries_unvectorized = excluded.entries_unvectorized,
                refreshed_at = excluded.refreshed_at
            returning 1
        ), watermark as (
            select case when greatest($5, max(created_at)) > $6 then $6 else greatest($5, max(created_at)) end as value
            from changed
        ), untracked as (
            delete from flywheel.tracked_knowledge as tracked
            where tracked.id in (select key from gone)
               or tracked.id in (select key from seen
                                 where not unvectorized and not created_at > (select value from watermark) - $4)
               or (tracked.created_at > $2 and tracked.created_at <= (select value from watermark) - $4
                   and not tracked.unvectorized and not exists (select from seen where seen.key = tracked.id))
        ), tracked as (
            insert into flywheel.tracked_knowledge (id, day, unvectorized, created_at)
            select key, day, unvectorized, created_at from seen
            where (unvectorized or created_at > (select value from watermark) - $4)
              and not exists (select from counted where counted.id = seen.key
                                and (counted.day, counted.unvectorized, counted.created_at)
                                    is not distinct from (seen.day, seen.unvectorized, seen.created_at))
            on conflict (id) do update set
                day = excluded.day, unvectorized = excluded.unvectorized, created_at = excluded.created_at
        )
        select (select value from watermark), (select count(*) from seen) + (select count(*) from gone),
               (select count(*) from recount_days),
               (select count(*) from written) + (select count(*) from emptied)
    $sql$, run.knowledge_rows, key_type)
    using run.zone, coalesce(state.knowledge_watermark - run.lookback, '-infinity'), run.metrics_now, run.lookback,
          state.knowledge_watermark, run.ceiling
    into watermark, rows_read, days_recounted, rows_written;
    execute format($sql$
        select count(*), count(*) filter (where embedding is null) from %s as entries where created_at is null
    $sql$, run.knowledge_rows)
    into undated_knowledge, undated_unvectorized;
    step := jsonb_build_object('step', 'daily_knowledge', 'rows', rows_written, 'read', rows_read,
                               'days_recounted', days_recounted);
end
$$;

comment on function flywheel.refresh_knowledge_incremental(flywheel.refresh_run, flywheel.refresh_state) is
    'For flywheel.refresh(), incremental: daily_knowledge changed by the entries created since the watermark and the backlog''s changes (differences against tracked_knowledge, or their days recounted) and tracked_knowledge kept; returns the step''s refresh_log entry, the new watermark and the undated entries'' counts';
