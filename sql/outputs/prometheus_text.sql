-- flywheel.prometheus_text(with_timestamps): the Prometheus text exposition of the metrics.
--
-- Answers: what the old /metrics endpoint served, for the exporter (flywheel-sync exporter) and the
-- node_exporter textfile collector. The six gauges of metrics.md keep their exact names, so existing
-- alert rules keep working; a NULL rate is NaN, which no comparison matches, so `rate < 0.1` never
-- fires on an insufficient sample. Further gauges share the prefix.
--
-- Samples carry no timestamp by default: the textfile collector refuses them, and Prometheus drops
-- samples it thinks too old, which would hide a stalled refresh instead of showing it (the age gauge
-- shows it). with_timestamps => true adds computed_at in ms, as the old service did; the age gauge
-- never carries one, since it is computed when read.
--
-- When changing this, also change: flywheel.summary, grafana/ and the Prometheus rules, docs/metrics.md.
--
-- drop: drop function if exists flywheel.prometheus_text(boolean)
create function flywheel.prometheus_text(with_timestamps boolean default false)
returns text
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
    current flywheel.summary;
    stamp text;
    exposition text;
begin
    current := flywheel.latest_summary();
    stamp := case when with_timestamps
                  then ' ' || (extract(epoch from current.computed_at) * 1000)::bigint
                  else '' end;
    select string_agg(
               format(E'# HELP awoooi_flywheel_%1$s %2$s\n# TYPE awoooi_flywheel_%1$s gauge\n%3$s', name, help, samples),
               E'\n' order by position)
      into exposition
      from (values
        (1, 'playbook_count', 'Approved playbooks (valid records mirrored from Redis)',
            format(E'awoooi_flywheel_playbook_count %s%s\n', current.playbook_count, stamp)),
        (2, 'execution_success_rate', 'Auto-repair success rate (0-1), NaN=insufficient sample',
            format(E'awoooi_flywheel_execution_success_rate %s%s\n',
                   coalesce(round(current.execution_success_rate::numeric, 4)::text, 'NaN'), stamp)),
        (3, 'km_unvectorized_count', 'KM entries not yet vectorized',
            format(E'awoooi_flywheel_km_unvectorized_count %s%s\n', current.km_unvectorized_count, stamp)),
        (4, 'alertname_null_rate', 'Fraction of incidents with a missing (null or blank) alertname',
            format(E'awoooi_flywheel_alertname_null_rate %s%s\n', round(current.alertname_null_rate::numeric, 4), stamp)),
        (5, 'incidents_stuck', 'Incidents investigating for longer than stuck_after',
            format(E'awoooi_flywheel_incidents_stuck %s%s\n', current.incidents_stuck, stamp)),
        (6, 'km_vectorized_rate', 'Fraction of KM entries vectorized',
            format(E'awoooi_flywheel_km_vectorized_rate %s%s\n', round(current.km_vectorized_rate::numeric, 4), stamp)),
        (7, 'execution_success_sample', 'Executions (or playbook runs) behind execution_success_rate',
            format(E'awoooi_flywheel_execution_success_sample %s%s\n', current.execution_success_sample, stamp)),
        (8, 'execution_success_rate_source', 'Where execution_success_rate came from: 1 for the source in use',
            (select string_agg(format(E'awoooi_flywheel_execution_success_rate_source{source="%s"} %s%s\n',
                                      source, (source = current.execution_success_rate_source)::int, stamp), '' order by source)
               from unnest(array['24h', '7d', 'insufficient', 'playbooks']) as source)),
        (9, 'type4_count', 'TYPE-4 incidents investigating',
            format(E'awoooi_flywheel_type4_count %s%s\n', current.type4_count, stamp)),
        (10, 'today_processed', 'Incidents created since midnight in the timezone setting',
            format(E'awoooi_flywheel_today_processed %s%s\n', current.today_processed, stamp)),
        (11, 'flywheel_conversions_today', 'Knowledge entries created since midnight in the timezone setting',
            format(E'awoooi_flywheel_flywheel_conversions_today %s%s\n', current.flywheel_conversions_today, stamp)),
        (12, 'execution_success_today', 'Incidents created today whose outcome says execution_success',
            format(E'awoooi_flywheel_execution_success_today %s%s\n', current.execution_success_today, stamp)),
        (13, 'count_1h', 'Incidents created in the last hour',
            format(E'awoooi_flywheel_count_1h %s%s\n', current.count_1h, stamp)),
        (14, 'playbooks_invalid', 'Playbook records in Redis that failed validation',
            format(E'awoooi_flywheel_playbooks_invalid %s%s\n', current.playbooks_invalid, stamp)),
        (15, 'last_refresh_timestamp_seconds', 'When the metrics were computed (Unix time)',
            format(E'awoooi_flywheel_last_refresh_timestamp_seconds %s%s\n',
                   round(extract(epoch from current.computed_at), 3), stamp)),
        (16, 'refresh_age_seconds', 'Seconds since the metrics were computed (alert when this grows)',
            format(E'awoooi_flywheel_refresh_age_seconds %s\n',
                   round(greatest(extract(epoch from now() - current.computed_at), 0), 3)))
      ) as gauge(position, name, help, samples);
    return exposition;
end
$$;

comment on function flywheel.prometheus_text(boolean) is
    'Prometheus text exposition of the last refresh (the old /metrics gauges and more); NaN for a NULL rate; raises no_data_found before the first refresh';
