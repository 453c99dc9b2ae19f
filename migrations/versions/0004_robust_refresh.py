"""A refresh that never stops and never lies (issue 14), with jit off (issue 15).

flywheel.refresh() (version 4) skips the source rows it cannot use (a NULL, duplicated or over-long
key, an over-long notification_type, a created_at outside 1900..9999) and counts them per reason in
the new column refresh_log.unusable; caps its watermarks at now() + 5 minutes; refuses an as_of
beyond now() + 5 minutes; records every failure (lock waits, statement timeouts, overflows) with its
cause named; and takes its mutual exclusion as a row lock on the new table flywheel.refresh_lock,
which no role is granted, instead of the advisory lock ('flyw', 1) any login could take and a
cancelled run_refresh() kept for the rest of its session. The settings get bounds within which a
refresh succeeds, and TRUNCATE of flywheel.settings is refused. Every table and column of 0003
keeps its meaning.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from flywheel_sync.database import objects

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLES = """
create table flywheel.refresh_lock (
    singleton  boolean primary key default true check (singleton),
    holder_pid integer,
    taken_at   timestamptz
);
insert into flywheel.refresh_lock default values;
comment on table flywheel.refresh_lock is
    'One row, the refresh''s mutual exclusion: flywheel.refresh() holds its row lock to the end of its transaction. Granted to no role, so no login can hold it; only the flywheel functions take it (flywheel.take_refresh_lock)';
comment on column flywheel.refresh_lock.singleton is 'Always true: the table holds one row';
comment on column flywheel.refresh_lock.holder_pid is 'Backend pid of the refresh that last took the lock (pg_stat_activity.pid)';
comment on column flywheel.refresh_lock.taken_at is 'When it took it';

alter table flywheel.refresh_log add column unusable jsonb;
comment on column flywheel.refresh_log.unusable is
    'Source rows the run skipped because it cannot use them, per table and reason ({"incidents": {"id_missing": 1}}; flywheel.unusable_row_reason_sql): over every row when full, over the rows read when incremental. NULL when none';
"""

# The bounds each description states, before (0001) and after this release; written while the
# trigger of the release before still validates, so an existing value out of the new bounds does not
# stop the migration (OUT_OF_BOUNDS warns about it instead).
DESCRIBED_BOUNDS = (
    ("min_sample", "Integer >= 1", "Integer 1..1000000000"),
    ("stuck_after", "Interval > 0", "Interval > 0, at most 10 years"),
    ("dedup_window_min", "Integer >= 0", "Integer 0..1000000000"),
    ("retention", "Interval > 0", "Interval from 1 day to 100 years"),
    ("refresh_lock_wait", "Interval >= 0", "Interval > 0, at most 1 day"),
    ("refresh_lock_timeout", "Interval >= 0", "Interval > 0, at most 1 day"),
    ("refresh_statement_timeout", "Interval >= 0", "Interval from 1 second to 1 day"),
)


def describe_bounds(before: int, after: int) -> str:
    return "\n".join(
        f"update flywheel.settings set description = replace(description, '{bounds[before]}', '{bounds[after]}')"
        f" where key = '{key}';"
        for key, *bounds in DESCRIBED_BOUNDS)


OUT_OF_BOUNDS = """
do $bounds$
declare
    refused record;
begin
    for refused in select key, flywheel.setting_problem(key, value) as problem from flywheel.settings
                   where flywheel.setting_problem(key, value) is not null loop
        raise warning 'setting %: %; the refresh may fail until it is set within bounds (flywheel-sync settings set)',
            refused.key, refused.problem;
    end loop;
end
$bounds$;
"""

DROP = """
alter table flywheel.refresh_log drop column unusable;
drop table flywheel.refresh_lock;
"""


def upgrade() -> None:
    objects.execute(TABLES)
    objects.execute(describe_bounds(0, 1))
    objects.replace("0003", "0004")
    objects.after_objects(OUT_OF_BOUNDS)


def downgrade() -> None:
    objects.replace("0004", "0003")
    objects.execute(describe_bounds(1, 0))
    objects.execute(DROP)
