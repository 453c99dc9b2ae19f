-- flywheel.flywheel_json(): the Flywheel shape of metrics.md (the old /api/v1/stats/flywheel).
--
-- Answers: the six nodes with their status, the current flow and the TYPE-4 count, for the
-- platform's front end. Each node's status comes from the data (metrics.md, Fix): active when its
-- count is above zero, idle otherwise; deduplication has no data and stays active. dedup_window_min
-- and mcp_providers are the settings in force at the refresh.
--
-- When changing this, also change: flywheel.summary, flywheel.current_flow, docs/metrics.md.
--
-- drop: drop function if exists flywheel.flywheel_json()
create function flywheel.flywheel_json()
returns jsonb
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
    current flywheel.summary;
    flow jsonb;
begin
    current := flywheel.latest_summary();
    select coalesce(jsonb_agg(jsonb_build_object(
               'incident_id', incident_id,
               'alertname', case when btrim(coalesce(alertname, ''), E' \t\r\n') = '' then 'unknown' else alertname end,
               'current_node', current_node,
               'ts', flywheel.iso8601(created_at, current.timezone)
           ) order by position), '[]')
      into flow
      from flywheel.current_flow;
    return jsonb_build_object(
        'nodes', jsonb_build_object(
            'monitoring', jsonb_build_object(
                'status', case when current.count_1h > 0 then 'active' else 'idle' end,
                'count_1h', current.count_1h),
            'deduplication', jsonb_build_object(
                'status', 'active',
                'dedup_window_min', current.settings -> 'dedup_window_min'),
            'diagnosis', jsonb_build_object(
                'status', case when current.incidents_investigating > 0 then 'active' else 'idle' end,
                'mcp_providers_used', current.settings -> 'mcp_providers',
                'investigating', current.incidents_investigating),
            'reasoning', jsonb_build_object(
                'status', case when current.today_processed > 0 then 'active' else 'idle' end,
                'today_processed', current.today_processed),
            'execution', jsonb_build_object(
                'status', case when current.executions_24h > 0 then 'active' else 'idle' end,
                'success_today', current.execution_success_today,
                'executions_24h', current.executions_24h),
            'learning', jsonb_build_object(
                'status', case when current.km_created_24h > 0 then 'active' else 'idle' end,
                'created_24h', current.km_created_24h)
        ),
        'current_flow', flow,
        'type4_count', current.type4_count,
        'computed_at', flywheel.iso8601(current.computed_at, current.timezone)
    );
end
$$;

comment on function flywheel.flywheel_json() is
    'The Flywheel JSON of metrics.md (old /api/v1/stats/flywheel) from the last refresh; raises no_data_found before the first';
