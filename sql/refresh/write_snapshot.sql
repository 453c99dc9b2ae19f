-- flywheel.write_snapshot(): the refresh's last step: one row of flywheel.snapshots from the metric
-- definitions (flywheel.summary is that row), and the materialized view flywheel.current_flow brought up
-- to date.
--
-- Answers "where does each column of flywheel.summary come from?": the row is
-- insert ... select from flywheel.incident_metrics, execution_metrics, knowledge_metrics and
-- playbook_metrics, one file each in sql/metrics/. The arguments are what the refresh's earlier
-- steps found and the definitions cannot read from schema flywheel: the undated rows its passes
-- counted, the stuck and TYPE-4 counts (flywheel.stuck_counts), the buckets' start, and the
-- subqueries it read each source through (their skipped duplicate keys depend on what it read).
-- started: the refresh's start, for refresh_ms.
--
-- flywheel.current_flow (of flywheel.newest_active_incidents) is refreshed CONCURRENTLY, so readers
-- never wait for the refresh's transaction, and only when its rows would change: REFRESH ...
-- CONCURRENTLY costs 2.5-6 ms (two temporary tables and a diff) even for ten rows, while comparing the
-- ten rows costs a few tenths of a millisecond. Either way it then holds what a DBA's own
-- REFRESH MATERIALIZED VIEW CONCURRENTLY would put there.
--
-- When changing this, also change: flywheel.refresh() (its arguments), the columns of flywheel.snapshots.
--
-- drop: drop function if exists flywheel.write_snapshot(timestamptz, timestamptz, bigint, bigint, bigint, bigint, bigint, bigint, bigint, bigint, timestamptz, text, text, text)
create function flywheel.write_snapshot(
    as_of timestamptz, started timestamptz,
    undated_incidents bigint, undated_alertname_missing bigint, undated_investigating bigint, undated_mitigating bigint,
    undated_entries bigint, undated_unvectorized bigint,
    incidents_stuck bigint, type4_count bigint,
    recent_executions_from timestamptz,
    usable_incidents text, usable_executions text, usable_entries text)
returns void
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
begin
    insert into flywheel.snapshots (
        computed_at, timezone, playbook_count, playbooks_invalid,
        execution_success_rate, execution_success_rate_source, execution_success_sample,
        executions_24h, executions_7d,
        km_total, km_unvectorized_count, km_vectorized_rate, km_created_24h, flywheel_conversions_today,
        incidents_total, incidents_alertname_missing, alertname_null_rate,
        incidents_investigating, incidents_mitigating, incidents_stuck, type4_count,
        today_processed, count_1h, execution_success_today, settings_version_id, refresh_ms)
    select as_of, flywheel.setting('timezone') #>> '{}', playbooks.playbook_count, playbooks.playbooks_invalid,
           executions.execution_success_rate, executions.execution_success_rate_source,
           executions.execution_success_sample, executions.executions_24h, executions.executions_7d,
           knowledge.km_total, knowledge.km_unvectorized_count, knowledge.km_vectorized_rate,
           knowledge.km_created_24h, knowledge.flywheel_conversions_today,
           incidents.incidents_total, incidents.incidents_alertname_missing, incidents.alertname_null_rate,
           incidents.incidents_investigating, incidents.incidents_mitigating, incidents.incidents_stuck,
           incidents.type4_count, incidents.today_processed, incidents.count_1h, incidents.execution_success_today,
           flywheel.settings_version(as_of),
           round(extract(epoch from clock_timestamp() - started)::numeric * 1000, 1)
    from flywheel.incident_metrics(as_of, undated_incidents, undated_alertname_missing, undated_investigating,
                                   undated_mitigating, incidents_stuck, type4_count, usable_incidents) as incidents,
         flywheel.execution_metrics(as_of, recent_executions_from, usable_executions) as executions,
         flywheel.knowledge_metrics(as_of, undated_entries, undated_unvectorized, usable_entries) as knowledge
         left join flywheel.playbook_metrics() as playbooks on true;

    if exists (select * from flywheel.newest_active_incidents except all select * from flywheel.current_flow)
       or exists (select * from flywheel.current_flow except all select * from flywheel.newest_active_incidents) then
        refresh materialized view concurrently flywheel.current_flow;
    end if;
end
$$;

comment on function flywheel.write_snapshot(timestamptz, timestamptz, bigint, bigint, bigint, bigint, bigint, bigint, bigint, bigint, timestamptz, text, text, text) is
    'For flywheel.refresh(): writes the snapshot at as_of from incident_metrics, execution_metrics, knowledge_metrics and playbook_metrics (the undated counts, stuck counts, bucket start and source subqueries as the refresh found them), then refreshes the materialized view flywheel.current_flow concurrently when its rows would change';
