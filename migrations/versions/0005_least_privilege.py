"""Least privilege: the SECURITY DEFINER routines belong to flywheel_owner and run without row security.

Creates the NOLOGIN role flywheel_owner when absent; release 0005's sql/security/ownership_v01.sql (now sql/security/ownership.sql)
hands it every SECURITY DEFINER routine of schema flywheel (flywheel.refresh, flywheel.count_playbooks),
sets row_security = off on them, and grants it SELECT on the source tables where the migrating role
may. No table changes. Like flywheel_reader and flywheel_refresher, the role is cluster-wide and
kept by every downgrade, with what it was granted (docs/migrations.md).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from flywheel_sync.database import objects

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

OWNER_ROLE = """
-- Created when absent, never altered when present; never dropped (a DBA grants it SELECT on the
-- platform's tables, and those grants must outlive a downgrade).
do $roles$
begin
    if not exists (select from pg_roles where rolname = 'flywheel_owner') then
        create role flywheel_owner nologin;
        comment on role flywheel_owner is
            'flywheel-sync: owns the SECURITY DEFINER functions of schema flywheel (refresh); reads the source tables, writes schema flywheel; nothing else';
    end if;
exception when insufficient_privilege then
    raise exception 'creating role flywheel_owner needs CREATEROLE'
        using hint = 'A superuser runs the statements of docs/migrations.md, "What the migrating role needs"; then run the migration again.';
end
$roles$;
"""


def upgrade() -> None:
    objects.execute(OWNER_ROLE)
    objects.replace("0004", "0005")


def downgrade() -> None:
    objects.replace("0005", "0004")
