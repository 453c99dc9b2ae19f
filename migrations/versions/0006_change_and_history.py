"""Costs that follow change, and history in tiers (issues 13 and 15).

Release 0006 replaces flywheel.refresh (sql/functions/refresh_v05.sql). No table changes yet.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from flywheel_sync import objects

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    objects.replace("0005", "0006")


def downgrade() -> None:
    objects.replace("0006", "0005")
