"""The history tiers pruned by a range of their primary key (flywheel.record_history).

Release 0008: flywheel.record_history() prunes each tier by its own delete, a range of the primary
key (bucket_width, bucket_start), where one delete joined with flywheel.history_tiers() was planned as
a merge join that read every bucket kept at every refresh (37,000 buckets at the default retentions:
12 ms of a 35 ms routine refresh at S). The full steps (refresh_incidents_full and the executions'
and knowledge entries') pass the data's range of created_at to the rollups' definitions as it is,
which keep it within decades of now themselves. No table changes.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from flywheel_sync.database import objects

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    objects.replace("0007", "0008")


def downgrade() -> None:
    objects.replace("0008", "0007")
