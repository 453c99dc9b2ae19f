-- flywheel.created_rows(): how many usable rows of a source table were created in a time range.
--
-- Answers, for the metric functions (flywheel.incident_metrics, execution_metrics, knowledge_metrics),
-- the one thing plain SQL cannot say: the rows of a rolling window's first, partial day or 10-minute
-- bucket, read from the platform's table through its created_at index. The table's schema is a
-- setting and its usable rows a filter built at run time (flywheel.usable_rows_sql), so this is the
-- only dynamic SQL the metrics need; everything else they read is a table of schema flywheel.
--
-- usable_rows is the subquery the refresh reads the table through (its duplicate-key list depends on
-- what the run read); NULL, for a DBA's ad hoc call, builds it over the whole table as a full refresh
-- does. created_before NULL: no upper bound. in_local_day (with zone): only rows whose created_at
-- falls on that local date. successes counts the rows whose success IS TRUE (executions only).
--
-- drop: drop function if exists flywheel.created_rows(text, timestamptz, timestamptz, date, text, boolean, text)
create function flywheel.created_rows(source_table text, created_from timestamptz,
                                      created_before timestamptz default null,
                                      in_local_day date default null, zone text default null,
                                      count_successes boolean default false, usable_rows text default null,
                                      out rows bigint, out successes bigint)
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
    source_schema constant text := flywheel.setting('source_schema') #>> '{}';
begin
    execute format('select count(*), %s from %s as source_row where created_at >= $1%s%s',
                   case when count_successes then 'count(*) filter (where success is true)' else 'null::bigint' end,
                   coalesce(usable_rows, flywheel.usable_rows_sql(source_schema, source_table,
                                                                  flywheel.unusable_row_reason_sql(source_schema, source_table))),
                   case when created_before is not null then ' and created_at < $2' end,
                   case when in_local_day is not null then ' and (created_at at time zone $4)::date = $3' end)
       using created_from, created_before, in_local_day, zone
       into rows, successes;
end
$$;

comment on function flywheel.created_rows(text, timestamptz, timestamptz, date, text, boolean, text) is
    'Usable rows of a source table (incidents, auto_repair_executions, knowledge_entries) with created_at >= created_from and < created_before (NULL: no bound), on the local date in_local_day in zone if given; successes: of them, success IS TRUE (when count_successes). usable_rows: the subquery to read (NULL: flywheel.usable_rows_sql over the whole table)';
