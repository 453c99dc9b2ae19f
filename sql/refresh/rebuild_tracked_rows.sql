-- flywheel.rebuild_tracked_rows(run): the full refresh's tracked_rows step -- the rows the next
-- incremental run must know the counted state of, and the watermarks it starts from.
--
-- Answers, for flywheel.refresh() (after the full passes; nobody else calls it): empties
-- tracked_incidents, tracked_executions and tracked_knowledge and, when the source lets the refresh
-- track changes (run.tracking), fills them with every row that may still change -- active incidents,
-- the unvectorized backlog, anything within the lookback of its table's watermark -- as the full passes
-- counted it. The watermarks are the newest updated_at (incidents) and created_at (the others) of
-- the usable rows, never past run.ceiling; NULL without tracking. Returns the step's refresh_log entry
-- (the rows tracked) and the three watermarks.
--
-- When changing this, also change: flywheel.refresh_incidents_incremental,
-- refresh_executions_incremental and refresh_knowledge_incremental (which keep these rows).
--
-- drop: drop function if exists flywheel.rebuild_tracked_rows(flywheel.refresh_run)
create function flywheel.rebuild_tracked_rows(run flywheel.refresh_run, out step jsonb,
                                              out incidents_watermark timestamptz, out executions_watermark timestamptz,
                                              out knowledge_watermark timestamptz)
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
begin
    delete from flywheel.tracked_incidents;
    delete from flywheel.tracked_executions;
    delete from flywheel.tracked_knowledge;
    if run.tracking then
        execute format('select case when max(updated_at) > $1 then $1 else max(updated_at) end from %s as incidents', run.incidents_rows)
        using run.ceiling into incidents_watermark;
        execute format('select case when max(created_at) > $1 then $1 else max(created_at) end from %s as executions', run.executions_rows)
        using run.ceiling into executions_watermark;
        execute format('select case when max(created_at) > $1 then $1 else max(created_at) end from %s as entries', run.knowledge_rows)
        using run.ceiling into knowledge_watermark;
        execute format($sql$
            insert into flywheel.tracked_incidents
                (incident_id, day, status, alertname_missing, execution_success, updated_at,
                 created_at, alertname, notification_type)
            select incident_id::text, (created_at at time zone $1)::date, status,
                   alertname is null or btrim(alertname, E' \t\r\n') = '',
                   coalesce(outcome ->> 'execution_success' = 'true', false), updated_at,
                   created_at, alertname, notification_type
            from %s as incidents
            where status in ('investigating', 'mitigating') or updated_at > $2
        $sql$, run.incidents_rows)
        using run.zone, incidents_watermark - run.lookback;
        execute format($sql$
            insert into flywheel.tracked_executions (id, day, success, created_at)
            select id::text, (created_at at time zone $1)::date, success, created_at
            from %s as executions
            where created_at > $2
        $sql$, run.executions_rows)
        using run.zone, executions_watermark - run.lookback;
        execute format($sql$
            insert into flywheel.tracked_knowledge (id, day, unvectorized, created_at)
            select id::text, (created_at at time zone $1)::date, embedding is null, created_at
            from %s as entries
            where embedding is null or created_at > $2
        $sql$, run.knowledge_rows)
        using run.zone, knowledge_watermark - run.lookback;
    end if;
    step := jsonb_build_object('step', 'tracked_rows', 'rows',
                               (select count(*) from flywheel.tracked_incidents)
                               + (select count(*) from flywheel.tracked_executions)
                               + (select count(*) from flywheel.tracked_knowledge));
end
$$;

comment on function flywheel.rebuild_tracked_rows(flywheel.refresh_run) is
    'For flywheel.refresh(), full: tracked_incidents, tracked_executions and tracked_knowledge rebuilt (rows that may still change, as counted) when the source allows tracking; returns the step''s refresh_log entry and the new watermarks';
