-- flywheel.summary_targets: each metric that has a target, its value, the target, and whether it is met.
--
-- Answers: "is the flywheel healthy?" metric by metric. Read by `flywheel-sync summary` and Grafana
-- stat panels' thresholds. The targets are the settings in force at the last refresh. met is NULL
-- when the value is (an insufficient sample is neither good nor bad).
--
-- When changing this, also change: the target_* settings (validate_setting), docs/metrics.md.
--
-- drop: drop view if exists flywheel.summary_targets
create view flywheel.summary_targets as
select
    target.metric,
    target.value,
    target.comparison,
    target.target,
    case when target.value is null then null
         when target.comparison = '>=' then target.value >= target.target
         else target.value <= target.target
    end as met,
    summary.computed_at
from flywheel.summary
cross join lateral (values
    ('playbook_count', summary.playbook_count::double precision, '>=',
        (summary.settings ->> 'target_playbook_count')::double precision),
    ('execution_success_rate', summary.execution_success_rate, '>=',
        (summary.settings ->> 'target_execution_success_rate')::double precision),
    ('km_unvectorized_count', summary.km_unvectorized_count::double precision, '<=',
        (summary.settings ->> 'target_km_unvectorized_count')::double precision),
    ('alertname_null_rate', summary.alertname_null_rate, '<=',
        (summary.settings ->> 'target_alertname_null_rate')::double precision),
    ('incidents_stuck', summary.incidents_stuck::double precision, '<=',
        (summary.settings ->> 'target_incidents_stuck')::double precision)
) as target(metric, value, comparison, target);

comment on view flywheel.summary_targets is
    'Each metric with a target (metrics.md): its value at the last refresh, the target and whether it is met';
comment on column flywheel.summary_targets.metric is 'Name of the metric (a column of flywheel.summary)';
comment on column flywheel.summary_targets.value is 'Its value at the last refresh; NULL for an insufficient sample';
comment on column flywheel.summary_targets.comparison is '>= (at least the target) or <= (at most the target)';
comment on column flywheel.summary_targets.target is 'The target, from the target_* settings in force at the refresh';
comment on column flywheel.summary_targets.met is 'True when the value meets the target; NULL when the value is NULL';
comment on column flywheel.summary_targets.computed_at is 'The refresh''s clock';
