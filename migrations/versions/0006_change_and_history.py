"""Costs that follow change, and history in tiers (issues 13 and 15).

Release 0006 replaces flywheel.refresh (sql/functions/refresh_v05.sql). refresh_state keeps the stuck
and TYPE-4 counts (flywheel.stuck_counts changes them by differences instead of counting the active
set every minute), and the incremental refresh looks up in the whole table only the keys of rows it
has not counted before (unusable_rows version 2). Every other table and column keeps its meaning.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from flywheel_sync import objects

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

STUCK_COUNTS = """
alter table flywheel.refresh_state add column incidents_stuck bigint, add column type4_count bigint,
    add column stuck_before timestamptz;
comment on column flywheel.refresh_state.incidents_stuck is
    'Tracked incidents investigating with created_at <= stuck_before, as the last refresh left them (flywheel.stuck_counts); NULL: counted whole by the next run';
comment on column flywheel.refresh_state.type4_count is
    'Tracked incidents investigating with notification_type TYPE-4, as the last refresh left them; NULL: counted whole by the next run';
comment on column flywheel.refresh_state.stuck_before is
    'computed_at - stuck_after of the last refresh: the created_at up to which incidents_stuck counts';
"""

DROP_STUCK_COUNTS = """
alter table flywheel.refresh_state drop column stuck_before, drop column type4_count, drop column incidents_stuck;
"""


def upgrade() -> None:
    objects.execute(STUCK_COUNTS)
    objects.replace("0005", "0006")


def downgrade() -> None:
    objects.replace("0006", "0005")
    objects.execute(DROP_STUCK_COUNTS)
