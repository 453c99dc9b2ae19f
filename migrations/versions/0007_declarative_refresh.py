"""The refresh as small steps, and each rollup's definition as a plain query (issue 12).

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
scan) and daily_knowledge_from_source. No table changes: refresh() keeps its signature, its results
and its refresh_log rows.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from flywheel_sync.database import objects

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    objects.replace("0006", "0007")


def downgrade() -> None:
    objects.replace("0007", "0006")
