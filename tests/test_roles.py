"""flywheel_reader reads results only; flywheel_refresher refreshes and writes the playbook mirror only."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.platform import refresh


@pytest.fixture
def as_role(connection):
    refresh(connection)

    def switch(role: str) -> sa.Connection:
        connection.execute(sa.text(f"set role {role}"))
        return connection

    yield switch
    connection.rollback()


def test_reader_reads_the_summary_and_the_read_functions(as_role):
    reader = as_role("flywheel_reader")
    assert reader.execute(sa.text("select playbook_count from flywheel.summary")).scalar_one() == 0
    reader.execute(sa.text("select flywheel.summary_json(), flywheel.flywheel_json(), flywheel.prometheus_text()"))
    reader.execute(sa.text("select * from flywheel.summary_targets, flywheel.daily_incidents, flywheel.snapshots"))


@pytest.mark.parametrize("statement", [
    "select count(*) from incidents",
    "select count(*) from knowledge_entries",
    "select count(*) from auto_repair_executions",
    "insert into flywheel.snapshots (computed_at) values (now())",
    "delete from flywheel.playbooks",
    "update flywheel.settings set value = '5' where key = 'min_sample'",
    "select flywheel.refresh()",
])
def test_reader_cannot_touch_sources_write_or_refresh(as_role, statement):
    reader = as_role("flywheel_reader")
    with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
        reader.execute(sa.text(statement))


def test_refresher_runs_the_refresh_without_reading_the_sources_itself(as_role):
    refresher = as_role("flywheel_refresher")
    assert refresher.execute(sa.text("select flywheel.refresh()")).scalar_one()["status"] == "ok"
    with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
        refresher.execute(sa.text("select count(*) from incidents"))


def test_refresher_writes_the_playbook_mirror(as_role):
    refresher = as_role("flywheel_refresher")
    refresher.execute(sa.text(
        "insert into flywheel.playbooks (redis_key, playbook_id, valid, invalid_reason, content_hash)"
        " values ('\\x01', 'PB-1', false, 'not JSON', '\\x00')"))
    refresher.execute(sa.text("insert into flywheel.sync_log (started_at, mode, complete) values (now(), 'pass', true)"))


@pytest.mark.parametrize("statement", [
    "update flywheel.settings set value = '5' where key = 'min_sample'",
    "delete from flywheel.snapshots",
    "insert into flywheel.daily_incidents (day, day_start, incidents_created, alertname_missing,"
    " status_investigating, status_mitigating, status_resolved, status_closed, status_other, refreshed_at)"
    " values (current_date, now(), 0, 0, 0, 0, 0, 0, 0, now())",
])
def test_refresher_cannot_change_settings_or_results_directly(as_role, statement):
    refresher = as_role("flywheel_refresher")
    with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
        refresher.execute(sa.text(statement))


def test_refresh_is_security_definer_with_a_pinned_search_path(connection):
    definer, config = connection.execute(sa.text(
        "select prosecdef, proconfig from pg_proc where oid = 'flywheel.refresh(timestamptz, boolean)'::regprocedure")).one()
    assert definer and "search_path=pg_catalog, pg_temp" in config
