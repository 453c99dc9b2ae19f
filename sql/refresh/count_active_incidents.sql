-- flywheel.count_active_incidents(run, stuck_changed, type4_changed): the refresh's active_incidents
-- step -- the stuck and TYPE-4 counts of the run.
--
-- Answers, for flywheel.refresh() (after the per-table steps; nobody else calls it): incidents_stuck
-- (investigating, created_at <= as_of - stuck_after) and type4_count (investigating, TYPE-4), which
-- flywheel.incident_metrics takes as given. With tracking they are kept by flywheel.stuck_counts over
-- the tracked incidents, changed by the incidents step's differences and the incidents newly past
-- stuck_after: counting them each run read the whole active set (4-5x a normal platform's routine
-- refresh at M stuck). Without tracking (run.tracking false: a missing index, or no
-- incidents.updated_at) they are counted in the source, and the flow's newest active incidents are
-- tracked for flywheel.newest_active_incidents alone, so flywheel.current_flow has one definition in
-- both modes (the next run is full and tracks afresh). Returns the step's refresh_log entry (rows:
-- the incidents tracked for the flow, 0 with tracking).
--
-- When changing this, also change: flywheel.stuck_counts, flywheel.newest_active_incidents.
--
-- drop: drop function if exists flywheel.count_active_incidents(flywheel.refresh_run, bigint, bigint)
create function flywheel.count_active_incidents(run flywheel.refresh_run, stuck_changed bigint, type4_changed bigint,
                                                out incidents_stuck bigint, out type4_count bigint, out step jsonb)
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    stuck_before constant timestamptz := run.metrics_now - (flywheel.setting('stuck_after') #>> '{}')::interval;
    flow_rows bigint := 0;
begin
    if run.tracking then
        select counted.incidents_stuck, counted.type4_count into incidents_stuck, type4_count
          from flywheel.stuck_counts(stuck_before, stuck_changed, type4_changed) as counted;
    else
        execute format($sql$
            select (select count(*) from %1$s as incidents where status = 'investigating' and created_at <= $1),
                   (select count(*) from %1$s as incidents where status = 'investigating' and notification_type = 'TYPE-4')
        $sql$, run.incidents_rows)
        using stuck_before
        into incidents_stuck, type4_count;
        -- Only what the flow shows; updated_at may not even exist.
        execute format($sql$
            insert into flywheel.tracked_incidents
                (incident_id, status, alertname_missing, execution_success, created_at, alertname)
            select incident_id::text, status, false, false, created_at, alertname
            from %s as incidents
            where status in ('investigating', 'mitigating')
            order by created_at desc nulls last, incident_id::text desc
            limit $1
        $sql$, run.incidents_rows)
        using (flywheel.setting('current_flow_limit') #>> '{}')::integer;
        get diagnostics flow_rows = row_count;
    end if;
    step := jsonb_build_object('step', 'active_incidents', 'rows', flow_rows);
end
$$;

comment on function flywheel.count_active_incidents(flywheel.refresh_run, bigint, bigint) is
    'For flywheel.refresh(): the stuck and TYPE-4 counts of the run (kept by flywheel.stuck_counts, or counted in the source without tracking, when the flow''s newest active incidents are tracked for flywheel.current_flow); returns them and the step''s refresh_log entry';
