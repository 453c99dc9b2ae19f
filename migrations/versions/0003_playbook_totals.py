"""Playbook totals kept by triggers, a faster full refresh, and a nightly full refresh by default.

flywheel.refresh() (version 3) reads the approved, invalid, runs and successes of the playbook mirror
from flywheel.playbook_totals instead of counting flywheel.playbooks every run; statement-level
triggers (flywheel.count_playbooks) keep the totals in the writer's transaction. Its full passes put
rows into days with flywheel.local_day_key_sql and aggregate in parallel workers. The new setting
full_refresh_at (default 03:00 local) makes the first refresh after that time each day full. Every
table and column of 0002 keeps its meaning.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from flywheel_sync.database import objects

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TOTALS = """
-- No sync may write between the count below and the triggers that keep it.
lock table flywheel.playbooks in share row exclusive mode;
create table flywheel.playbook_totals (
    singleton          boolean primary key default true check (singleton),
    approved           bigint not null,
    invalid            bigint not null,
    approved_runs      bigint not null,
    approved_successes bigint not null
);
comment on table flywheel.playbook_totals is
    'Counts over flywheel.playbooks (one row), kept by the triggers of flywheel.count_playbooks in the writer''s transaction; flywheel.refresh() reads them instead of counting the mirror';
comment on column flywheel.playbook_totals.singleton is 'Always true: the table holds one row';
comment on column flywheel.playbook_totals.approved is 'Valid records whose status is approved (playbook_count)';
comment on column flywheel.playbook_totals.invalid is 'Records that failed validation (playbooks_invalid)';
comment on column flywheel.playbook_totals.approved_runs is 'Sum of success_count + failure_count over the approved valid records (the rate''s playbook fallback)';
comment on column flywheel.playbook_totals.approved_successes is 'Sum of success_count over the approved valid records';
insert into flywheel.playbook_totals (approved, invalid, approved_runs, approved_successes)
select count(*) filter (where valid and status = 'approved'), count(*) filter (where not valid),
       coalesce(sum(success_count + failure_count) filter (where valid and status = 'approved'), 0),
       coalesce(sum(success_count) filter (where valid and status = 'approved'), 0)
from flywheel.playbooks;

-- The dashboard's "Top failing approved playbooks" reads its ten rows from here in the panel's own
-- order (34 ms over 100 000 playbooks without it, 0.1 ms with it).
create index playbooks_failing on flywheel.playbooks
    (failure_count desc, (round(success_count::numeric / nullif(success_count + failure_count, 0), 4)), playbook_id)
    where valid and status = 'approved' and failure_count > 0;
comment on index flywheel.playbooks_failing is
    'Approved valid playbooks with failures, in the order of the dashboard''s top failing playbooks panel';
"""

# After the release: its validate_setting knows the key.
NIGHTLY = """
insert into flywheel.settings (key, value, description) values
    ('full_refresh_at', '"03:00"', 'Local time of day (in the timezone setting, HH:MM) after which the first refresh of each day is full, correcting what the incremental runs cannot see; null: never by itself (schedule refresh --full instead)');
"""

# Settings refuse deletes (the refresh needs each one); this one goes with its release.
NIGHTLY_REMOVED = """
alter table flywheel.settings disable trigger settings_validate;
delete from flywheel.settings where key = 'full_refresh_at';
alter table flywheel.settings enable trigger settings_validate;
"""

DROP = """
drop index flywheel.playbooks_failing;
drop table flywheel.playbook_totals;
"""


def upgrade() -> None:
    objects.execute(TOTALS)
    objects.replace("0002", "0003")
    objects.execute(NIGHTLY)


def downgrade() -> None:
    objects.execute(NIGHTLY_REMOVED)
    objects.replace("0003", "0002")
    objects.execute(DROP)
