-- flywheel.execution_metrics(): execution_success_rate of metrics.md at a clock, with its source,
-- its sample and the two windows it chooses between, as one row.
--
-- Answers "how is the success rate computed?" for a DBA. Each window (24 hours, 7 days back from
-- as_of) is the whole 10-minute buckets of flywheel.recent_executions after its start plus the rows
-- of its first, partial bucket, read from the source through the created_at index
-- (flywheel.created_rows); a window that starts before the kept buckets (recent_executions_from, a
-- back-fill) is read from the source whole. The rate is the first window holding min_sample
-- executions; none when either holds fewer but some; the approved playbooks' runs
-- (flywheel.playbook_metrics) when the 7 days hold none. flywheel.write_snapshot() stores the row.
--
-- When changing this, also change: docs/metrics.md, the buckets' width and origin in flywheel.refresh().
--
-- drop: drop function if exists flywheel.execution_metrics(timestamptz, timestamptz, text)
create function flywheel.execution_metrics(
    as_of timestamptz,
    recent_executions_from timestamptz default null,
    usable_executions text default null)
returns table (
    execution_success_rate double precision, execution_success_rate_source text, execution_success_sample bigint,
    executions_24h bigint, executions_7d bigint)
language sql
stable
begin atomic
    with windows as (
        select window_name,
               partial.rows + coalesce(buckets.executions, 0) as executions,
               partial.successes + coalesce(buckets.successes, 0) as successes
        from (values ('24h', as_of - interval '24 hours'), ('7d', as_of - interval '7 days')) as span (window_name, start),
             lateral (select span.start >= coalesce(recent_executions_from,
                                                    (select kept.recent_executions_from from flywheel.refresh_state as kept))
                             as bucketed,
                             date_bin(interval '10 minutes', span.start, timestamptz '2000-01-01 00:00:00+00') as first_bucket
                     ) as window_bucket,
             lateral flywheel.created_rows('auto_repair_executions', span.start,
                                           case when window_bucket.bucketed then window_bucket.first_bucket + interval '10 minutes' end,
                                           count_successes => true, usable_rows => usable_executions) as partial,
             lateral (select sum(recent.executions) as executions, sum(recent.successes) as successes
                      from flywheel.recent_executions as recent
                      where window_bucket.bucketed and recent.bucket_start > window_bucket.first_bucket) as buckets
    ), counted as (
        select (select executions from windows where window_name = '24h') as executions_24h,
               (select successes from windows where window_name = '24h') as successes_24h,
               (select executions from windows where window_name = '7d') as executions_7d,
               (select successes from windows where window_name = '7d') as successes_7d,
               (flywheel.setting('min_sample') #>> '{}')::bigint as min_sample
    )
    select case when executions_24h >= min_sample then successes_24h::double precision / executions_24h
                when executions_7d >= min_sample then successes_7d::double precision / executions_7d
                when executions_7d > 0 then null
                when playbooks.approved_runs >= min_sample
                    then playbooks.approved_successes::double precision / playbooks.approved_runs end,
           case when executions_24h >= min_sample then '24h'
                when executions_7d >= min_sample then '7d'
                when executions_7d > 0 then 'insufficient'
                when playbooks.approved_runs >= min_sample then 'playbooks'
                else 'insufficient' end,
           case when executions_24h >= min_sample then executions_24h
                when executions_7d > 0 then executions_7d
                else playbooks.approved_runs end,
           executions_24h, executions_7d
    from counted left join flywheel.playbook_metrics() as playbooks on true;
end;

comment on function flywheel.execution_metrics(timestamptz, timestamptz, text) is
    'execution_success_rate at as_of (metrics.md) with its source (24h, 7d, playbooks, insufficient), its sample and the 24-hour and 7-day execution counts: whole 10-minute buckets of recent_executions from recent_executions_from on, plus the first partial bucket from the source (usable_executions: the refresh''s subquery; NULL: the whole table)';
