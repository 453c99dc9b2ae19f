-- flywheel.summary: the flywheel's health now, as one row.
--
-- Answers: every metric of metrics.md as of the last refresh, with the success rate's source and
-- sample size beside it and computed_at (the refresh's clock). Read by Grafana's stat panels, by
-- summary_json(), flywheel_json(), prometheus_text() and summary_targets, and by anyone asking ad hoc.
-- It is the newest row of flywheel.snapshots with the settings it was computed with (its row of
-- flywheel.settings_versions: release 0006 keeps a version's id in each snapshot instead of a copy), so
-- reading it is two index probes; the work happened in flywheel.refresh(), whose
-- flywheel.write_snapshot() writes the row as insert ... select from the metric definitions of
-- sql/metrics/. Not a materialized view: the snapshot row is already the stored result, and
-- REFRESH MATERIALIZED VIEW CONCURRENTLY of a copy of it costs 2.5-6 ms at every refresh (two temporary
-- tables and a diff), a routine refresh at M 43% slower (docs/refresh.md).
--
-- When changing this, also change: summary_json, flywheel_json, prometheus_text, summary_targets.
--
-- drop: drop view if exists flywheel.summary
create view flywheel.summary as
select
    playbook_count,
    execution_success_rate,
    execution_success_rate_source,
    execution_success_sample,
    today_processed,
    flywheel_conversions_today,
    km_vectorized_rate,
    km_unvectorized_count,
    alertname_null_rate,
    incidents_stuck,
    type4_count,
    count_1h,
    execution_success_today,
    executions_24h,
    executions_7d,
    km_total,
    km_created_24h,
    incidents_total,
    incidents_alertname_missing,
    incidents_investigating,
    incidents_mitigating,
    playbooks_invalid,
    timezone,
    version.settings,
    snapshot_id,
    computed_at
from flywheel.snapshots
join flywheel.settings_versions as version using (settings_version_id)
order by snapshot_id desc
limit 1;

comment on view flywheel.summary is
    'The flywheel health metrics as of the last flywheel.refresh(): one row (none before the first refresh), the newest snapshot. Definitions: metrics.md and the functions of sql/metrics/ (flywheel.incident_metrics, execution_metrics, knowledge_metrics, playbook_metrics).';

-- The columns mean what the same columns of flywheel.snapshots (settings: of flywheel.settings_versions)
-- mean: copy those comments, so the two can never disagree.
select flywheel.comment_columns_like('flywheel.summary', array['flywheel.snapshots', 'flywheel.settings_versions']::regclass[]);
