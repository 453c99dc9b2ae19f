"""The refresh as small steps, each rollup's and each metric's definition as a plain query, the current
flow as a materialized view (issue 12).

Release 0007 replaces flywheel.refresh (sql/refresh/refresh.sql) by an orchestrator that takes the
lock, picks the mode (flywheel.refresh_mode), decides how to read each source (flywheel.refresh_reads)
and calls one step function per source table and mode (flywheel.refresh_incidents_full,
refresh_incidents_incremental and the executions' and knowledge entries' pairs), then
flywheel.rebuild_tracked_rows (full), flywheel.write_snapshot (the metrics) and
flywheel.save_refresh_state; the steps share the run's context as the composite type
flywheel.refresh_run and record their refresh_log entries through flywheel.timed_step. The rollups'
full definitions are set-returning functions over the source tables, which the full refresh writes
and the property test compares the incremental rollups with: flywheel.daily_incidents_from_source,
daily_executions_from_source, recent_executions_from_source (over executions_from_source, their one
scan) and daily_knowledge_from_source. refresh() keeps its signature and its results.

Read models: flywheel.current_flow becomes a materialized view (`\\dm flywheel.*`), refreshed
concurrently by the refresh in its transaction when its rows change and owned by flywheel_owner, so a
DBA's own REFRESH MATERIALIZED VIEW CONCURRENTLY gives what `flywheel-sync refresh` gives;
flywheel.summary stays a view of the newest snapshot (a materialized copy of it costs 2.5-6 ms a
refresh). current_flow materializes the view flywheel.newest_active_incidents over the tracked incidents (a refresh that
cannot track tracks just those). The snapshot is written by flywheel.write_snapshot() as
insert ... select from flywheel.incident_metrics, execution_metrics, knowledge_metrics and
playbook_metrics (sql/metrics/), whose only dynamic SQL is flywheel.created_rows().

The table step drops the current_flow table (its rows are the matview's, created from the tracked
incidents). A refresh of release 0006 that could not track left its flow in that table alone: its
rows are tracked first, so the matview shows them until the next refresh (a full one, which starts the
tracked rows afresh). The downgrade restores the table, filled from the tracked incidents.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

import importlib.util
from pathlib import Path

from flywheel_sync.database import objects

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _core_migration():
    """Migration 0001, whose table the downgrade puts back (alembic loads migrations by path)."""
    spec = importlib.util.spec_from_file_location("flywheel_migration_0001", Path(__file__).with_name("0001_core.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DROP_CURRENT_FLOW_TABLE = """
insert into flywheel.tracked_incidents (incident_id, status, alertname_missing, execution_success, created_at, alertname)
select flow.incident_id, flow.status, false, false, flow.created_at, flow.alertname
from flywheel.current_flow as flow
where not exists (select from flywheel.refresh_state)
on conflict (incident_id) do nothing;
drop table flywheel.current_flow;
"""

# The table as migration 0001 creates it, filled as the refresh of release 0006 fills it.
CURRENT_FLOW_TABLE = _core_migration().CURRENT_FLOW + """
insert into flywheel.current_flow (position, incident_id, alertname, status, current_node, created_at, refreshed_at)
select row_number() over (order by tracked.created_at desc nulls last, tracked.incident_id desc),
       tracked.incident_id, tracked.alertname, tracked.status,
       case tracked.status when 'investigating' then 'diagnosis' else 'execution' end,
       tracked.created_at, newest.computed_at
from (select * from flywheel.tracked_incidents
      where status in ('investigating', 'mitigating')
      order by created_at desc nulls last, incident_id desc
      limit (select (value #>> '{}')::integer from flywheel.settings where key = 'current_flow_limit')) as tracked
cross join (select computed_at from flywheel.snapshots order by snapshot_id desc limit 1) as newest;
"""

# Each metric column of flywheel.snapshots names where the metric is defined, so that `\d+` says it
# (flywheel.summary's columns copy these comments when the objects are created, after this step).
METRIC_DEFINITIONS = """
(values ('incident_metrics', array['incidents_total', 'incidents_alertname_missing', 'alertname_null_rate',
                                   'incidents_investigating', 'incidents_mitigating', 'incidents_stuck', 'type4_count',
                                   'today_processed', 'execution_success_today', 'count_1h']),
        ('execution_metrics', array['execution_success_rate', 'execution_success_rate_source',
                                    'execution_success_sample', 'executions_24h', 'executions_7d']),
        ('knowledge_metrics', array['km_total', 'km_unvectorized_count', 'km_vectorized_rate', 'km_created_24h',
                                    'flywheel_conversions_today']),
        ('playbook_metrics', array['playbook_count', 'playbooks_invalid'])) as metric (definition, columns)
"""


def _metric_comments(comment: str) -> str:
    """Each metric column's comment set to ``comment``, a SQL expression of ``old`` (the comment now)
    and ``defined_by`` (where the metric is defined)."""
    return f"""
do $comments$
declare
    metric record;
    column_name text;
    old text;
    defined_by text;
begin
    for metric in select * from {METRIC_DEFINITIONS} loop
        defined_by := format('; defined by flywheel.%s() in sql/metrics/%s.sql', metric.definition, metric.definition);
        foreach column_name in array metric.columns loop
            old := col_description('flywheel.snapshots'::regclass,
                                   (select attnum from pg_attribute
                                    where attrelid = 'flywheel.snapshots'::regclass and attname = column_name));
            execute format('comment on column flywheel.snapshots.%I is %L', column_name, {comment});
        end loop;
    end loop;
end
$comments$;
"""


def upgrade() -> None:
    objects.replace("0006", None)
    objects.execute(DROP_CURRENT_FLOW_TABLE)
    objects.execute(_metric_comments("old || defined_by"))
    objects.replace(None, "0007")


def downgrade() -> None:
    objects.replace("0007", None)
    objects.execute(_metric_comments("replace(old, defined_by, '')"))
    objects.execute(CURRENT_FLOW_TABLE)
    objects.replace(None, "0006")
