-- flywheel.summary_json(): the Summary shape of metrics.md (the old /api/v1/stats/summary).
--
-- Answers: the metrics as the old service's JSON, for whatever read that endpoint. Rates rounded to
-- 4 decimals, NULL rate as JSON null, computed_at in the timezone setting. Keys beyond the old ones:
-- the rate's source and sample, type4_count, count_1h, execution_success_today, playbooks_invalid.
--
-- When changing this, also change: flywheel.summary (its columns), docs/metrics.md.
--
-- drop: drop function if exists flywheel.summary_json()
create function flywheel.summary_json()
returns jsonb
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
    current flywheel.summary;
begin
    current := flywheel.latest_summary();
    return jsonb_build_object(
        'playbook_count', current.playbook_count,
        'execution_success_rate', round(current.execution_success_rate::numeric, 4),
        'execution_success_rate_source', current.execution_success_rate_source,
        'execution_success_sample', current.execution_success_sample,
        'today_processed', current.today_processed,
        'flywheel_conversions_today', current.flywheel_conversions_today,
        'km_vectorized_rate', round(current.km_vectorized_rate::numeric, 4),
        'km_unvectorized_count', current.km_unvectorized_count,
        'alertname_null_rate', round(current.alertname_null_rate::numeric, 4),
        'incidents_stuck', current.incidents_stuck,
        'type4_count', current.type4_count,
        'count_1h', current.count_1h,
        'execution_success_today', current.execution_success_today,
        'playbooks_invalid', current.playbooks_invalid,
        'computed_at', flywheel.iso8601(current.computed_at, current.timezone)
    );
end
$$;

comment on function flywheel.summary_json() is
    'The Summary JSON of metrics.md (old /api/v1/stats/summary) from the last refresh; raises no_data_found before the first';
