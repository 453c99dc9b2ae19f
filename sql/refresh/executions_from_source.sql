-- The executions' rollups computed from the platform's auto_repair_executions table:
-- flywheel.daily_executions_from_source(source_schema, zone) is the definition of
-- flywheel.daily_executions, flywheel.recent_executions_from_source(source_schema, buckets_from) that
-- of flywheel.recent_executions, and flywheel.executions_from_source(...) the one scan both read.
--
-- Answers: what the two rollups must hold, for a DBA who checks them, for the full refresh
-- (flywheel.refresh_executions_full writes both from one call of executions_from_source) and for the
-- test that the incremental refresh equals them:
--   daily_executions    per local day (zone) of created_at, the executions and those whose success is true;
--   recent_executions   per 10-minute bucket (date_bin from 2000-01-01 UTC) of created_at from
--                       buckets_from on, the same two counts: the success rate's windows sum them.
-- daily_executions_from_source also returns day NULL (the executions whose created_at is NULL, which
-- count nowhere) and day -infinity (the rows the refresh cannot use: flywheel.unusable_row_reason_sql,
-- or reason_sql when the caller has it), as the incidents' and knowledge entries' definitions do;
-- the buckets hold neither.
--
-- The scan groups by day and bucket at once (reading the buckets again through the created_at index
-- cost another second at L), puts rows into days by flywheel.local_day_key_sql's fixed offsets
-- (days_from .. days_to: the data's range, for speed only) and groups behind a volatile planner_fence
-- column so that PostgreSQL aggregates in parallel workers (see daily_incidents_from_source).
--
-- When changing this, also change: flywheel.refresh_executions_incremental (the same counts kept by
-- differences), flywheel.write_snapshot (the windows that sum the buckets), docs/metrics.md.
--
-- drop: drop function if exists flywheel.recent_executions_from_source(text, timestamptz); drop function if exists flywheel.daily_executions_from_source(text, text); drop function if exists flywheel.executions_from_source(text, text, timestamptz, text, timestamptz, timestamptz)
create function flywheel.executions_from_source(source_schema text, zone text, buckets_from timestamptz,
                                                reason_sql text default null, days_from timestamptz default null,
                                                days_to timestamptz default null)
returns table (day date, bucket_start timestamptz, executions bigint, successes bigint)
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
begin
    -- The bucket bounds are literals, in UTC; no buckets when buckets_from is NULL.
    return query execute format($sql$
        select (day_key at time zone 'UTC')::date, recent_bucket, count(*), count(*) filter (where success)
        from (select case when (%6$s) is null then %1$s else '-infinity'::timestamptz end as day_key,
                     case when created_at >= %3$L::timestamptz
                          then date_bin(interval %4$L, created_at, timestamptz %5$L) end as recent_bucket,
                     success, clock_timestamp() as planner_fence
              from %2$I.auto_repair_executions as executions) as execution
        group by day_key, recent_bucket
    $sql$, flywheel.local_day_key_sql('created_at', zone, greatest(days_from, now() - interval '30 years'),
                                      least(days_to, now() + interval '1 year')),
           source_schema,
           to_char(buckets_from at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00',
           '600 seconds', '2000-01-01 00:00:00.000000+00',
           coalesce(reason_sql, flywheel.unusable_row_reason_sql(source_schema, 'auto_repair_executions')));
end
$$;

comment on function flywheel.executions_from_source(text, text, timestamptz, text, timestamptz, timestamptz) is
    'The executions of source_schema counted, and those with success, per local day of created_at in zone and per 10-minute bucket from buckets_from on (NULL before), in one scan: what daily_executions_from_source and recent_executions_from_source sum. Day NULL: created_at NULL; day -infinity: rows the refresh cannot use (reason_sql, default flywheel.unusable_row_reason_sql)';

create function flywheel.daily_executions_from_source(source_schema text, zone text)
returns table (day date, executions bigint, successes bigint)
language sql
stable
set search_path = pg_catalog, pg_temp
begin atomic
    select executions.day, sum(executions.executions)::bigint, sum(executions.successes)::bigint
    from flywheel.executions_from_source(source_schema, zone, null) as executions
    group by executions.day;
end;

comment on function flywheel.daily_executions_from_source(text, text) is
    'The definition of flywheel.daily_executions: per local day of created_at in zone, the executions of source_schema and those with success; day NULL counts the undated executions, day -infinity the rows the refresh cannot use';

create function flywheel.recent_executions_from_source(source_schema text, buckets_from timestamptz)
returns table (bucket_start timestamptz, executions bigint, successes bigint)
language sql
stable
set search_path = pg_catalog, pg_temp
begin atomic
    select executions.bucket_start, sum(executions.executions)::bigint, sum(executions.successes)::bigint
    from flywheel.executions_from_source(source_schema, 'UTC', buckets_from) as executions
    where executions.bucket_start is not null and executions.day is distinct from '-infinity'
    group by executions.bucket_start;
end;

comment on function flywheel.recent_executions_from_source(text, timestamptz) is
    'The definition of flywheel.recent_executions: per 10-minute bucket (from 2000-01-01 UTC) of created_at from buckets_from on, the executions of source_schema and those with success, the rows the refresh cannot use left out';
