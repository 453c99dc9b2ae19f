-- flywheel.write_snapshot(run, ...): the refresh's metrics step -- every metric of the snapshot from
-- the rollups just written, the current flow, and the snapshot row itself.
--
-- Answers, for flywheel.refresh() (after the per-table steps; nobody else calls it): the row of
-- flywheel.snapshots that flywheel.summary reads (metrics.md's definitions), and flywheel.current_flow.
-- Whole-history totals are the sums of the rollups plus the undated rows (the per-table steps count
-- them); today's counts are the rollup days from today on; count_1h reads its hour, km_created_24h
-- its first, partial day (the days after it from the rollup); the success rate's 24-hour and 7-day
-- windows sum the 10-minute buckets of recent_executions (from recent_executions_from on) and read
-- the rows of their first, partial bucket; the active counts come from the rollups, the stuck and
-- TYPE-4 counts from flywheel.stuck_counts (changed by stuck_changed and type4_changed; counted whole
-- when they are NULL) and current_flow from the tracked incidents, or, without tracking, all from the
-- source; the playbook counts are flywheel.playbook_totals. Appends the windows and active_incidents
-- steps to steps (timed from step_started) and returns when the snapshot step started.
--
-- When changing this, also change: docs/metrics.md, flywheel.summary (the columns read), docs/refresh.md.
--
-- drop: drop function if exists flywheel.write_snapshot(flywheel.refresh_run, bigint, bigint, bigint, bigint, bigint, bigint, timestamptz, bigint, bigint, bigint, interval, integer, jsonb, timestamptz)
create function flywheel.write_snapshot(run flywheel.refresh_run,
                                        undated_incidents bigint, undated_alertname_missing bigint,
                                        undated_investigating bigint, undated_mitigating bigint,
                                        undated_knowledge bigint, undated_unvectorized bigint,
                                        recent_executions_from timestamptz, stuck_changed bigint, type4_changed bigint,
                                        min_sample bigint, stuck_after interval, flow_limit integer,
                                        inout steps jsonb, inout step_started timestamptz)
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    -- now's date in the zone (today_start is its midnight): rollup days from it on are "today".
    today date := (run.metrics_now at time zone run.zone)::date;
    -- The buckets of recent_executions: 10 minutes from a fixed origin (executions_from_source).
    bucket constant interval := interval '10 minutes';
    bucket_origin constant timestamptz := timestamptz '2000-01-01 00:00:00+00';
    window_bucket timestamptz;
    window_start timestamptz;
    window_executions bigint;
    window_successes bigint;
    active_source text;
    rows_written bigint;
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
begin
    -- Whole-history totals and the day-aligned windows, from the rollups just written.
    select coalesce(sum(incidents_created), 0) + undated_incidents,
           coalesce(sum(alertname_missing), 0) + undated_alertname_missing,
           coalesce(sum(incidents_created) filter (where day >= today), 0),
           coalesce(sum(execution_success) filter (where day >= today), 0)
      into incidents_total, incidents_alertname_missing, today_processed, execution_success_today
      from flywheel.daily_incidents;
    select coalesce(sum(entries_created), 0) + undated_knowledge,
           coalesce(sum(entries_unvectorized), 0) + undated_unvectorized,
           coalesce(sum(entries_created) filter (where day >= today), 0)
      into km_total, km_unvectorized, km_conversions_today
      from flywheel.daily_knowledge;

    -- The rolling windows: their first, partial day through the created_at index (widened by a
    -- few hours, the day tested exactly), the whole days after it from the rollups.
    execute format($sql$
        select count(*) from %s as incidents
        where created_at >= $1
    $sql$, run.incidents_rows)
    using run.metrics_now - interval '1 hour'
    into count_1h;
    -- The rate's windows: whole 10-minute buckets, and the rows of the first, partial bucket
    -- through the created_at index. A window older than the buckets (a back-fill) reads the source.
    for window_start in select unnest(array[run.metrics_now - interval '24 hours', run.metrics_now - interval '7 days']) loop
        if window_start >= recent_executions_from then
            window_bucket := date_bin(bucket, window_start, bucket_origin);
            execute format($sql$
                select count(*) + (select coalesce(sum(executions), 0) from flywheel.recent_executions
                                   where bucket_start > $3),
                       count(*) filter (where success is true)
                       + (select coalesce(sum(successes), 0) from flywheel.recent_executions where bucket_start > $3)
                from %s as executions
                where created_at >= $1 and created_at < $2
            $sql$, run.executions_rows)
            using window_start, window_bucket + bucket, window_bucket
            into window_executions, window_successes;
        else
            execute format($sql$
                select count(*), count(*) filter (where success is true)
                from %s as executions
                where created_at >= $1
            $sql$, run.executions_rows)
            using window_start
            into window_executions, window_successes;
        end if;
        if window_start = run.metrics_now - interval '24 hours' then
            executions_24h := window_executions;
            successes_24h := window_successes;
        else
            executions_7d := window_executions;
            successes_7d := window_successes;
        end if;
    end loop;
    execute format($sql$
        select count(*) + (select coalesce(sum(entries_created), 0) from flywheel.daily_knowledge
                           where day > ($2 at time zone $1)::date)
        from %s as entries
        where created_at >= $2
          and created_at < ((($2 at time zone $1)::date + 1)::timestamp at time zone $1) + interval '3 hours'
          and (created_at at time zone $1)::date = ($2 at time zone $1)::date
    $sql$, run.knowledge_rows)
    using run.zone, run.metrics_now - interval '24 hours'
    into km_created_24h;
    steps := steps || flywheel.timed_step(jsonb_build_object('step', 'windows', 'rows', 0), step_started);
    step_started := clock_timestamp();

    -- Active incidents: how many investigate and mitigate is in the rollups (each day counts its
    -- incidents by status now); the newest are read from the tracked rows, which hold every active
    -- incident in its state as last read (a change bumps updated_at, so it was read), through
    -- their partial index; the stuck and TYPE-4 ones are kept by flywheel.stuck_counts over the
    -- same rows, changed by the incidents step's differences and the incidents newly past
    -- stuck_after (counting them each run read the whole active set: 4-5x a normal platform's
    -- routine refresh at M stuck); without tracking, all from the source.
    select coalesce(sum(status_investigating), 0) + undated_investigating,
           coalesce(sum(status_mitigating), 0) + undated_mitigating
      into incidents_investigating, incidents_mitigating
      from flywheel.daily_incidents;
    active_source := case when run.tracking then 'flywheel.tracked_incidents' else run.incidents_rows end;
    if run.tracking then
        select counted.incidents_stuck, counted.type4_count into incidents_stuck, type4_count
          from flywheel.stuck_counts(run.metrics_now - stuck_after, stuck_changed, type4_changed) as counted;
    else
        execute format($sql$
            select (select count(*) from %1$s as incidents where status = 'investigating' and created_at <= $1),
                   (select count(*) from %1$s as incidents where status = 'investigating' and notification_type = 'TYPE-4')
        $sql$, active_source)
        using run.metrics_now - stuck_after
        into incidents_stuck, type4_count;
    end if;

    delete from flywheel.current_flow;
    execute format($sql$
        insert into flywheel.current_flow
            (position, incident_id, alertname, status, current_node, created_at, refreshed_at)
        select row_number() over (order by created_at desc nulls last, incident_id desc),
               incident_id, alertname, status,
               case status when 'investigating' then 'diagnosis' else 'execution' end,
               created_at, $2
        from (select incident_id::text as incident_id, alertname, status, created_at
              from %s as incidents
              where status in ('investigating', 'mitigating')
              order by created_at desc nulls last, incident_id::text desc
              limit $1) as newest
    $sql$, active_source)
    using flow_limit, run.metrics_now;
    get diagnostics rows_written = row_count;
    steps := steps || flywheel.timed_step(jsonb_build_object('step', 'active_incidents', 'rows', rows_written), step_started);
    step_started := clock_timestamp();

    -- Approved, valid playbooks, invalid records and the approved ones' runs, as the triggers on
    -- the mirror keep them (flywheel.count_playbooks).
    select approved, invalid, approved_runs, approved_successes
      into playbook_count, playbooks_invalid, playbook_runs, playbook_successes
      from flywheel.playbook_totals;

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
    else
        rate_source := case when playbook_runs >= min_sample then 'playbooks' else 'insufficient' end;
        success_rate := case when playbook_runs >= min_sample
                             then playbook_successes::double precision / playbook_runs end;
        rate_sample := playbook_runs;
    end if;

    insert into flywheel.snapshots (
        computed_at, timezone, playbook_count, playbooks_invalid,
        execution_success_rate, execution_success_rate_source, execution_success_sample,
        executions_24h, executions_7d,
        km_total, km_unvectorized_count, km_vectorized_rate, km_created_24h, flywheel_conversions_today,
        incidents_total, incidents_alertname_missing, alertname_null_rate,
        incidents_investigating, incidents_mitigating, incidents_stuck, type4_count,
        today_processed, count_1h, execution_success_today, settings_version_id, refresh_ms)
    values (
        run.metrics_now, run.zone, playbook_count, playbooks_invalid,
        success_rate, rate_source, rate_sample,
        executions_24h, executions_7d,
        km_total, km_unvectorized,
        case when km_total > 0 then (km_total - km_unvectorized)::double precision / km_total else 0 end,
        km_created_24h, km_conversions_today,
        incidents_total, incidents_alertname_missing,
        case when incidents_total > 0 then incidents_alertname_missing::double precision / incidents_total else 0 end,
        incidents_investigating, incidents_mitigating, incidents_stuck, type4_count,
        today_processed, count_1h, execution_success_today,
        flywheel.settings_version(run.metrics_now),
        round(extract(epoch from clock_timestamp() - run.started)::numeric * 1000, 1));
end
$$;

comment on function flywheel.write_snapshot(flywheel.refresh_run, bigint, bigint, bigint, bigint, bigint, bigint, timestamptz, bigint, bigint, bigint, interval, integer, jsonb, timestamptz) is
    'For flywheel.refresh(): every metric of metrics.md from the rollups, buckets and tracked rows just written, current_flow, and the snapshots row; appends the windows and active_incidents steps';
