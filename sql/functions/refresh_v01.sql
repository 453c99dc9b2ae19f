-- flywheel.refresh(as_of): compute every metric from the platform's tables, in one transaction.
--
-- Answers: nothing by itself; it writes what everything else reads. Called by `flywheel-sync
-- refresh`, by cron, systemd or pg_cron (plain `select flywheel.refresh();` is all it needs), and by
-- the sync worker after a change. Writes, in one transaction so a reader (Grafana) sees the old
-- results or the new, never a mix, and never waits:
--   flywheel.daily_incidents, daily_executions, daily_knowledge   (rewritten)
--   flywheel.current_flow                                         (rewritten)
--   flywheel.snapshots                                            (one row appended; summary is it)
--   flywheel.refresh_log                                          (one row, failed runs too)
-- and prunes snapshots, refresh_log and sync_log older than the retention setting.
--
-- Reading the sources (schema: the source_schema setting, quoted, never interpolated raw):
--   * each table is scanned once for its whole-history numbers: the daily rollups, with the grand
--     total in the same pass (grouping sets), counts combined with FILTER;
--   * the time windows (today, 1 hour, 24 hours, 7 days) read only their window, through an index on
--     created_at where the platform has one (flywheel-sync check lists the indexes to create);
--   * the active incidents (investigating, mitigating) are a small set read by status.
-- Boundaries (today_start, now - 1 hour, ...) are computed once here and passed as parameters, not
-- per row. Whole-history numbers will come from the rollups when the refresh becomes incremental.
--
-- Locks: only the ACCESS SHARE of a plain SELECT on source tables, with lock_timeout set to the
-- refresh_lock_timeout setting so it gives up rather than queue behind DDL. One refresh at a time: a
-- transaction-scoped advisory lock, waited for up to refresh_lock_wait.
--
-- as_of is the metrics' clock ("now" of metrics.md); it defaults to the transaction's start. Giving
-- another instant is for tests and back-fills: windows are open-ended like metrics.md's, so rows
-- created after as_of still count.
--
-- Returns the refresh_log row as jsonb (status ok or failed). A failure inside the work is recorded
-- in refresh_log, raised as a WARNING, and returned with status failed; nothing else of that run
-- stays. Failing to get the lock raises lock_not_available.
--
-- When changing this, also change: the tables of migrations (columns written here), docs/refresh.md.
--
-- drop: drop function if exists flywheel.refresh(timestamptz)
create function flywheel.refresh(as_of timestamptz default null)
returns jsonb
language plpgsql
volatile
security definer
-- lock_timeout is listed so that the values set inside end with the function, not the caller's transaction.
set search_path = pg_catalog, pg_temp
set lock_timeout = 0
as $$
declare
    -- 'flyw' and 1: the refresh's advisory lock (the sync worker uses 'flyw' and 2).
    lock_class constant integer := x'666c7977'::integer;
    started timestamptz := clock_timestamp();
    step_started timestamptz := clock_timestamp();
    steps jsonb := '[]';
    rows_written bigint;

    metrics_now timestamptz := coalesce(as_of, now());
    zone text := flywheel.setting('timezone') #>> '{}';
    min_sample bigint := (flywheel.setting('min_sample') #>> '{}')::bigint;
    stuck_after interval := (flywheel.setting('stuck_after') #>> '{}')::interval;
    flow_limit integer := (flywheel.setting('current_flow_limit') #>> '{}')::integer;
    retention interval := (flywheel.setting('retention') #>> '{}')::interval;
    source_schema text := flywheel.setting('source_schema') #>> '{}';
    today_start timestamptz;

    incidents_total bigint;
    incidents_alertname_missing bigint;
    today_processed bigint;
    count_1h bigint;
    execution_success_today bigint;
    incidents_investigating bigint;
    incidents_mitigating bigint;
    incidents_stuck bigint;
    type4_count bigint;
    executions_24h bigint;
    successes_24h bigint;
    executions_7d bigint;
    successes_7d bigint;
    km_total bigint;
    km_unvectorized bigint;
    km_conversions_today bigint;
    km_created_24h bigint;
    playbook_count bigint;
    playbooks_invalid bigint;
    playbook_runs bigint;
    playbook_successes bigint;
    success_rate double precision;
    rate_source text;
    rate_sample bigint;

    log_row flywheel.refresh_log;
    failure_message text;
    failure_state text;
    failure_detail text;
begin
    perform set_config('lock_timeout',
        (extract(epoch from (flywheel.setting('refresh_lock_wait') #>> '{}')::interval) * 1000)::bigint || 'ms', true);
    begin
        perform pg_advisory_xact_lock(lock_class, 1);
    exception when lock_not_available then
        raise exception 'another flywheel refresh is running and did not finish within refresh_lock_wait (%)',
                flywheel.setting('refresh_lock_wait') #>> '{}'
            using errcode = 'lock_not_available',
                  hint = 'Let it finish (see pg_stat_activity and flywheel.refresh_log), or raise the refresh_lock_wait setting.';
    end;
    perform set_config('lock_timeout',
        (extract(epoch from (flywheel.setting('refresh_lock_timeout') #>> '{}')::interval) * 1000)::bigint || 'ms', true);

    begin
        -- Midnight of now's date in the zone: computed once, passed as a parameter.
        today_start := date_trunc('day', metrics_now, zone);

        -- Incidents, whole history: the daily rollup and, from the same scan, the grand total.
        delete from flywheel.daily_incidents;
        execute format($sql$
            with per_day as (
                select day,
                       grouping(day) = 1 as is_total,
                       count(*) as incidents_created,
                       count(*) filter (where alertname is null or btrim(alertname, E' \t\r\n') = '') as alertname_missing,
                       count(*) filter (where status = 'investigating') as status_investigating,
                       count(*) filter (where status = 'mitigating') as status_mitigating,
                       count(*) filter (where status = 'resolved') as status_resolved,
                       count(*) filter (where status = 'closed') as status_closed,
                       count(*) filter (where status is null
                                        or status not in ('investigating', 'mitigating', 'resolved', 'closed')) as status_other
                from (select (created_at at time zone $1)::date as day, alertname, status from %I.incidents) as incident
                group by grouping sets ((day), ())
            ), written as (
                insert into flywheel.daily_incidents
                    (day, day_start, incidents_created, alertname_missing, status_investigating,
                     status_mitigating, status_resolved, status_closed, status_other, refreshed_at)
                select day, day::timestamp at time zone $1, incidents_created, alertname_missing,
                       status_investigating, status_mitigating, status_resolved, status_closed, status_other, $2
                from per_day
                where not is_total and day is not null
                returning 1
            )
            select incidents_created, alertname_missing, (select count(*) from written)
            from per_day where is_total
        $sql$, source_schema)
        using zone, metrics_now
        into incidents_total, incidents_alertname_missing, rows_written;
        steps := steps || jsonb_build_object('step', 'daily_incidents', 'rows', rows_written,
                 'ms', round(extract(epoch from clock_timestamp() - step_started)::numeric * 1000, 1));
        step_started := clock_timestamp();

        -- Incidents, time windows: only rows since the earlier of today_start and one hour ago.
        execute format($sql$
            select count(*) filter (where created_at >= $1),
                   count(*) filter (where created_at >= $2),
                   count(*) filter (where created_at >= $1 and outcome ->> 'execution_success' = 'true')
            from %I.incidents
            where created_at >= least($1, $2)
        $sql$, source_schema)
        using today_start, metrics_now - interval '1 hour'
        into today_processed, count_1h, execution_success_today;
        steps := steps || jsonb_build_object('step', 'incident_windows', 'rows', 0,
                 'ms', round(extract(epoch from clock_timestamp() - step_started)::numeric * 1000, 1));
        step_started := clock_timestamp();

        -- Active incidents: the small set investigating or mitigating, and the newest of them.
        execute format($sql$
            select count(*) filter (where status = 'investigating'),
                   count(*) filter (where status = 'mitigating'),
                   count(*) filter (where status = 'investigating' and created_at <= $1),
                   count(*) filter (where status = 'investigating' and notification_type = 'TYPE-4')
            from %I.incidents
            where status in ('investigating', 'mitigating')
        $sql$, source_schema)
        using metrics_now - stuck_after
        into incidents_investigating, incidents_mitigating, incidents_stuck, type4_count;

        delete from flywheel.current_flow;
        execute format($sql$
            insert into flywheel.current_flow
                (position, incident_id, alertname, status, current_node, created_at, refreshed_at)
            select row_number() over (order by created_at desc nulls last, incident_id desc),
                   incident_id::text, alertname, status,
                   case status when 'investigating' then 'diagnosis' else 'execution' end,
                   created_at, $2
            from (select incident_id, alertname, status, created_at
                  from %I.incidents
                  where status in ('investigating', 'mitigating')
                  order by created_at desc nulls last, incident_id desc
                  limit $1) as newest
        $sql$, source_schema)
        using flow_limit, metrics_now;
        get diagnostics rows_written = row_count;
        steps := steps || jsonb_build_object('step', 'active_incidents', 'rows', rows_written,
                 'ms', round(extract(epoch from clock_timestamp() - step_started)::numeric * 1000, 1));
        step_started := clock_timestamp();

        -- Executions, whole history: the daily rollup.
        delete from flywheel.daily_executions;
        execute format($sql$
            insert into flywheel.daily_executions (day, day_start, executions, successes, refreshed_at)
            select day, day::timestamp at time zone $1, count(*), count(*) filter (where success is true), $2
            from (select (created_at at time zone $1)::date as day, success
                  from %I.auto_repair_executions) as execution
            where day is not null
            group by day
        $sql$, source_schema)
        using zone, metrics_now;
        get diagnostics rows_written = row_count;
        steps := steps || jsonb_build_object('step', 'daily_executions', 'rows', rows_written,
                 'ms', round(extract(epoch from clock_timestamp() - step_started)::numeric * 1000, 1));
        step_started := clock_timestamp();

        -- Executions, the rate's windows: the last 7 days, the last 24 hours within them.
        execute format($sql$
            select count(*) filter (where created_at >= $1),
                   count(*) filter (where created_at >= $1 and success is true),
                   count(*),
                   count(*) filter (where success is true)
            from %I.auto_repair_executions
            where created_at >= $2
        $sql$, source_schema)
        using metrics_now - interval '24 hours', metrics_now - interval '7 days'
        into executions_24h, successes_24h, executions_7d, successes_7d;

        -- Approved, valid playbooks: the count, and the rate's last fallback.
        select count(*) filter (where valid and status = 'approved'),
               count(*) filter (where not valid),
               coalesce(sum(success_count + failure_count) filter (where valid and status = 'approved'), 0),
               coalesce(sum(success_count) filter (where valid and status = 'approved'), 0)
          into playbook_count, playbooks_invalid, playbook_runs, playbook_successes
          from flywheel.playbooks;

        -- metrics.md, execution_success_rate: the first window with min_sample executions; no rate
        -- from a window that has some but too few; the playbooks only when 7 days hold none at all.
        -- The 24-hour window lies inside the 7-day one, so "either window holds any" is executions_7d > 0.
        if executions_24h >= min_sample then
            success_rate := successes_24h::double precision / executions_24h;
            rate_source := '24h';
            rate_sample := executions_24h;
        elsif executions_7d >= min_sample then
            success_rate := successes_7d::double precision / executions_7d;
            rate_source := '7d';
            rate_sample := executions_7d;
        elsif executions_7d > 0 then
            rate_source := 'insufficient';
            rate_sample := executions_7d;
        elsif playbook_runs >= min_sample then
            success_rate := playbook_successes::double precision / playbook_runs;
            rate_source := 'playbooks';
            rate_sample := playbook_runs;
        else
            rate_source := 'insufficient';
            rate_sample := playbook_runs;
        end if;
        steps := steps || jsonb_build_object('step', 'execution_rate', 'rows', 0,
                 'ms', round(extract(epoch from clock_timestamp() - step_started)::numeric * 1000, 1));
        step_started := clock_timestamp();

        -- Knowledge entries, whole history: the daily rollup and the grand total in one scan.
        delete from flywheel.daily_knowledge;
        execute format($sql$
            with per_day as (
                select day,
                       grouping(day) = 1 as is_total,
                       count(*) as entries_created,
                       count(*) filter (where is_unvectorized) as entries_unvectorized
                from (select (created_at at time zone $1)::date as day, embedding is null as is_unvectorized
                      from %I.knowledge_entries) as entry
                group by grouping sets ((day), ())
            ), written as (
                insert into flywheel.daily_knowledge (day, day_start, entries_created, entries_unvectorized, refreshed_at)
                select day, day::timestamp at time zone $1, entries_created, entries_unvectorized, $2
                from per_day
                where not is_total and day is not null
                returning 1
            )
            select entries_created, entries_unvectorized, (select count(*) from written)
            from per_day where is_total
        $sql$, source_schema)
        using zone, metrics_now
        into km_total, km_unvectorized, rows_written;
        steps := steps || jsonb_build_object('step', 'daily_knowledge', 'rows', rows_written,
                 'ms', round(extract(epoch from clock_timestamp() - step_started)::numeric * 1000, 1));
        step_started := clock_timestamp();

        -- Knowledge entries, time windows.
        execute format($sql$
            select count(*) filter (where created_at >= $1), count(*) filter (where created_at >= $2)
            from %I.knowledge_entries
            where created_at >= least($1, $2)
        $sql$, source_schema)
        using today_start, metrics_now - interval '24 hours'
        into km_conversions_today, km_created_24h;
        steps := steps || jsonb_build_object('step', 'knowledge_windows', 'rows', 0,
                 'ms', round(extract(epoch from clock_timestamp() - step_started)::numeric * 1000, 1));
        step_started := clock_timestamp();

        insert into flywheel.snapshots (
            computed_at, timezone, playbook_count, playbooks_invalid,
            execution_success_rate, execution_success_rate_source, execution_success_sample,
            executions_24h, executions_7d,
            km_total, km_unvectorized_count, km_vectorized_rate, km_created_24h, flywheel_conversions_today,
            incidents_total, incidents_alertname_missing, alertname_null_rate,
            incidents_investigating, incidents_mitigating, incidents_stuck, type4_count,
            today_processed, count_1h, execution_success_today, settings)
        values (
            metrics_now, zone, playbook_count, playbooks_invalid,
            success_rate, rate_source, rate_sample,
            executions_24h, executions_7d,
            km_total, km_unvectorized,
            case when km_total > 0 then (km_total - km_unvectorized)::double precision / km_total else 0 end,
            km_created_24h, km_conversions_today,
            incidents_total, incidents_alertname_missing,
            case when incidents_total > 0 then incidents_alertname_missing::double precision / incidents_total else 0 end,
            incidents_investigating, incidents_mitigating, incidents_stuck, type4_count,
            today_processed, count_1h, execution_success_today,
            (select jsonb_object_agg(key, value) from flywheel.settings));

        -- Retention, measured from the metrics' clock so that a back-fill never prunes the present.
        delete from flywheel.snapshots where computed_at < metrics_now - retention;
        delete from flywheel.refresh_log where started_at < metrics_now - retention;
        delete from flywheel.sync_log where started_at < metrics_now - retention;
        steps := steps || jsonb_build_object('step', 'snapshot', 'rows', 1,
                 'ms', round(extract(epoch from clock_timestamp() - step_started)::numeric * 1000, 1));
    exception when others then
        get stacked diagnostics failure_message = message_text, failure_state = returned_sqlstate,
                                failure_detail = pg_exception_detail;
        insert into flywheel.refresh_log (started_at, finished_at, computed_at, status, steps, error, sqlstate)
        values (started, clock_timestamp(), metrics_now, 'failed', steps,
                failure_message || coalesce(' (' || nullif(failure_detail, '') || ')', ''), failure_state)
        returning * into log_row;
        raise warning 'flywheel refresh failed: % (SQLSTATE %)', failure_message, failure_state
            using hint = 'See flywheel.refresh_log; flywheel-sync check tells whether the source tables are as expected.';
        return to_jsonb(log_row);
    end;

    insert into flywheel.refresh_log (started_at, finished_at, computed_at, status, steps)
    values (started, clock_timestamp(), metrics_now, 'ok', steps)
    returning * into log_row;
    return to_jsonb(log_row);
end
$$;

comment on function flywheel.refresh(timestamptz) is
    'Computes every flywheel metric from the source tables into snapshots, the daily rollups and current_flow, in one transaction; one at a time (advisory lock). Returns the refresh_log row as jsonb. as_of: the metrics'' clock, default now()';
