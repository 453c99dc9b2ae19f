"""flywheel.playbook_totals, kept by triggers, always equals counting the mirror."""

from __future__ import annotations

import sqlalchemy as sa

from flywheel_sync.database import db, migrate
from flywheel_sync.local import generate
from tests.platform import add_playbook

COUNTED = """
select count(*) filter (where valid and status = 'approved'), count(*) filter (where not valid),
       coalesce(sum(success_count + failure_count) filter (where valid and status = 'approved'), 0),
       coalesce(sum(success_count) filter (where valid and status = 'approved'), 0)
from flywheel.playbooks
"""
KEPT = "select approved, invalid, approved_runs, approved_successes from flywheel.playbook_totals"


def assert_totals_counted(connection: sa.Connection) -> tuple:
    kept = tuple(connection.execute(sa.text(KEPT)).one())
    assert kept == tuple(connection.execute(sa.text(COUNTED)).one())
    return kept


def test_playbook_totals_follow_every_insert_update_delete_and_truncate(connection):
    for number in range(6):
        add_playbook(connection, playbook_id=f"PB-{number}", status=["approved", "draft"][number % 2],
                     success_count=number, failure_count=1)
    add_playbook(connection, playbook_id="PB-bad", valid=False, invalid_reason="success_count is not an integer")
    assert assert_totals_counted(connection) == (3, 1, 9, 6)
    connection.execute(sa.text("update flywheel.playbooks set status = 'deprecated' where playbook_id = 'PB-0'"))
    connection.execute(sa.text("update flywheel.playbooks set success_count = 40 where playbook_id = 'PB-2'"))
    assert assert_totals_counted(connection) == (2, 1, 46, 44)
    connection.execute(sa.text("delete from flywheel.playbooks where playbook_id in ('PB-4', 'PB-bad')"))
    assert assert_totals_counted(connection) == (1, 0, 41, 40)
    connection.execute(sa.text("update flywheel.playbooks set last_seen_at = now()"))
    assert assert_totals_counted(connection) == (1, 0, 41, 40)
    connection.execute(sa.text("truncate flywheel.playbooks"))
    assert assert_totals_counted(connection) == (0, 0, 0, 0)


def test_playbook_totals_roll_back_with_the_rows(connection):
    add_playbook(connection, playbook_id="PB-kept")
    savepoint = connection.begin_nested()
    add_playbook(connection, playbook_id="PB-undone")
    savepoint.rollback()
    assert assert_totals_counted(connection) == (1, 0, 0, 0)


def test_refresh_reads_the_playbook_count_from_the_totals(connection):
    add_playbook(connection, status="approved", success_count=7, failure_count=3)
    add_playbook(connection, valid=False)
    connection.execute(sa.text("select flywheel.refresh()"))
    assert connection.execute(sa.text("select playbook_count, playbooks_invalid from flywheel.summary")).one() == (1, 1)


def test_upgrade_to_0003_counts_the_playbooks_already_mirrored(empty_database_url):
    engine = db.create_engine(empty_database_url, poolclass=sa.pool.NullPool)
    with engine.begin() as connection:
        generate.create_reference_schema(connection)
    migrate.upgrade(engine, "0002")
    with engine.begin() as connection:
        add_playbook(connection, playbook_id="PB-a", status="approved", success_count=3, failure_count=1)
        add_playbook(connection, playbook_id="PB-b", valid=False)
    migrate.upgrade(engine, "0003")
    with engine.begin() as connection:
        assert assert_totals_counted(connection) == (1, 1, 4, 3)
    engine.dispose()
