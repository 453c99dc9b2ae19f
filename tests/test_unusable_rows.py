"""One odd source row never stops the refresh: it is skipped, counted per reason in
refresh_log.unusable and reported by `flywheel-sync check` (issue 14). Platforms have looser schemas
than the reference one, so each test first drops the constraint its row would break."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from flywheel_sync.database import db
from tests.cli import run
from tests.platform import AS_OF, DAY, add_execution, add_incident, add_knowledge_entry, summary_row

LOOSE_KEYS = """
alter table incidents drop constraint incidents_pkey;
alter table incidents alter column incident_id drop not null;
alter table auto_repair_executions drop constraint auto_repair_executions_pkey;
alter table knowledge_entries drop constraint knowledge_entries_pkey;
"""
# The ids of executions and knowledge entries are identity columns: rows added after this have none.
NO_IDS = """
alter table auto_repair_executions alter column id drop identity, alter column id drop not null;
alter table knowledge_entries alter column id drop identity, alter column id drop not null;
"""
TEN_KB = "x" * 10_240


@pytest.fixture
def loose(connection) -> sa.Connection:
    """The test's connection, on source tables whose keys may be NULL or repeated."""
    connection.execute(sa.text(LOOSE_KEYS))
    return connection


def refresh(connection: sa.Connection, full: bool) -> dict:
    result = connection.execute(sa.text("select flywheel.refresh(:as_of, full => :full)"),
                                {"as_of": AS_OF, "full": full}).scalar_one()
    assert result["status"] == "ok", result["error"]
    return result


def test_an_incident_without_an_id_is_skipped_and_counted(loose):
    add_incident(loose, created_at=AS_OF - DAY)
    add_incident(loose, incident_id=None, status="investigating", created_at=AS_OF - DAY)
    result = refresh(loose, full=True)
    assert result["unusable"] == {"incidents": {"id_missing": 1}}
    assert (summary_row(loose).incidents_total, summary_row(loose).incidents_investigating) == (1, 0)


def test_knowledge_entries_and_executions_without_an_id_are_skipped_and_counted(loose):
    add_knowledge_entry(loose)
    loose.execute(sa.text(NO_IDS))
    add_knowledge_entry(loose)
    add_execution(loose)
    result = refresh(loose, full=True)
    assert result["unusable"] == {"knowledge_entries": {"id_missing": 1}, "auto_repair_executions": {"id_missing": 1}}
    assert (summary_row(loose).km_total, summary_row(loose).executions_7d) == (1, 0)


def test_the_full_refresh_counts_skipped_executions_with_or_without_a_time_and_only_usable_dated_ones(loose):
    loose.execute(sa.text("alter table auto_repair_executions alter column created_at drop not null"))
    add_execution(loose, created_at=None)
    add_execution(loose, success=False)
    loose.execute(sa.text(NO_IDS))
    add_execution(loose, created_at=None)
    add_execution(loose)
    result = refresh(loose, full=True)
    assert result["unusable"] == {"auto_repair_executions": {"id_missing": 2}}
    assert (summary_row(loose).executions_24h, summary_row(loose).executions_7d) == (1, 1)


def test_every_copy_of_a_duplicated_incident_id_is_skipped(loose):
    add_incident(loose, incident_id="INC-twice", status="investigating", created_at=AS_OF - DAY)
    add_incident(loose, incident_id="INC-twice", status="resolved", created_at=AS_OF - DAY)
    add_incident(loose, created_at=AS_OF - DAY)
    result = refresh(loose, full=True)
    assert result["unusable"] == {"incidents": {"id_duplicated": 2}}
    assert summary_row(loose).incidents_total == 1


@pytest.mark.parametrize("created_at", ["294276-12-31 00:00:00+00", "infinity", "-infinity", "1000-01-01 00:00:00+00"])
def test_an_incident_created_at_a_time_no_day_can_be_computed_for_is_skipped(loose, created_at):
    add_incident(loose, created_at=AS_OF - DAY)
    loose.execute(sa.text("insert into incidents (incident_id, status, created_at, updated_at)"
                          " values ('INC-odd-time', 'investigating', cast(:t as timestamptz), now())"), {"t": created_at})
    for full in (True, False):
        assert refresh(loose, full=full)["unusable"] == {"incidents": {"created_at_out_of_range": 1}}
    assert summary_row(loose).incidents_total == 1


@pytest.mark.parametrize("column", ["incident_id", "notification_type"])
def test_an_active_incident_with_a_10_kb_id_or_notification_type_is_skipped(loose, column):
    add_incident(loose, status="investigating", created_at=AS_OF - DAY, **{column: TEN_KB})
    result = refresh(loose, full=True)
    reason = "id_too_long" if column == "incident_id" else "notification_type_too_long"
    assert result["unusable"] == {"incidents": {reason: 1}}
    assert summary_row(loose).incidents_investigating == 0


def test_a_bad_row_written_after_a_full_refresh_is_skipped_by_the_incremental_one(loose):
    add_incident(loose, status="investigating", created_at=AS_OF - DAY)
    refresh(loose, full=True)
    now = loose.execute(sa.text("select now()")).scalar_one()
    add_incident(loose, incident_id=None, status="investigating", created_at=now, updated_at=now)
    add_incident(loose, status="investigating", notification_type=TEN_KB, created_at=now, updated_at=now)
    add_incident(loose, status="investigating", created_at=now, updated_at=now)
    result = refresh(loose, full=False)
    assert result["mode"] == "incremental"
    assert result["unusable"] == {"incidents": {"id_missing": 1, "notification_type_too_long": 1}}
    assert summary_row(loose).incidents_investigating == 2


def test_a_duplicate_written_after_a_full_refresh_skips_both_copies_incrementally(loose):
    kept = add_incident(loose, status="investigating", created_at=AS_OF - DAY)
    refresh(loose, full=True)
    now = loose.execute(sa.text("select now()")).scalar_one()
    add_incident(loose, incident_id=kept, status="mitigating", created_at=now, updated_at=now)
    result = refresh(loose, full=False)
    assert result["mode"] == "incremental"
    assert (summary_row(loose).incidents_total, summary_row(loose).incidents_investigating) == (0, 0)


def test_a_refresh_with_nothing_skipped_leaves_unusable_null(connection):
    add_incident(connection, created_at=AS_OF - DAY)
    assert refresh(connection, full=True)["unusable"] is None


def test_check_counts_the_rows_the_refresh_skips_per_reason(database_url, engine):
    with engine.begin() as connection:
        connection.execute(sa.text(LOOSE_KEYS))
        add_incident(connection, incident_id=None, created_at=AS_OF - DAY)
        add_incident(connection, incident_id="INC-twice", created_at=AS_OF - DAY)
        add_incident(connection, incident_id="INC-twice", created_at=AS_OF - DAY)
    result = run("check", "--json", database_url=database_url)
    warnings = [f"{item['subject']}: {item['message']}" for item in json.loads(result.output)["findings"]
                if item["level"] == "warning"]
    assert "incidents rows: 1 skipped by the refresh (id_missing): incident_id is NULL" in warnings
    assert "incidents rows: 2 skipped by the refresh (id_duplicated): another row has the same incident_id" in warnings


def test_check_suggests_a_unique_index_on_a_key_that_has_none(database_url, engine):
    with engine.begin() as connection:
        connection.execute(sa.text("alter table incidents drop constraint incidents_pkey"))
    report = json.loads(run("check", "--json", database_url=database_url).output)
    assert {"level": "suggestion", "subject": "incidents (incident_id)",
            "message": "no unique index on incident_id: every full refresh reads every incident_id to find the duplicates it skips",
            "statement": "CREATE UNIQUE INDEX CONCURRENTLY incidents_incident_id_unique ON public.incidents (incident_id);"
            } in report["findings"]


def test_a_key_repeated_after_a_full_refresh_is_found_through_the_key_index_by_the_incremental_one(loose):
    """With an index on the key (a partitioned table's primary key leads with it), the routine run
    looks up each key it reads instead of scanning the whole table."""
    loose.execute(sa.text("create index on incidents (incident_id)"))
    add_incident(loose, incident_id="twice", created_at=AS_OF - 3 * DAY)
    refresh(loose, full=True)
    now = loose.execute(sa.text("select now()")).scalar_one()
    add_incident(loose, incident_id="twice", status="investigating", created_at=now, updated_at=now)
    add_incident(loose, status="investigating", created_at=now, updated_at=now)
    result = refresh(loose, full=False)
    assert result["mode"] == "incremental"
    # Both copies: the first is the newest row of the full run, so within the lookback it reads again.
    assert result["unusable"] == {"incidents": {"id_duplicated": 2}}
    assert summary_row(loose).incidents_investigating == 1


@pytest.fixture
def partitioned(partitioned_database_url) -> sa.Connection:
    """A connection on range-partitioned source tables: the primary key is (key, created_at), so a
    key may repeat with another created_at, and no index on the key alone can rule a repeat out."""
    engine = db.create_engine(partitioned_database_url)
    with engine.begin() as connection:
        yield connection
    engine.dispose()


def test_a_key_repeated_by_a_row_created_since_the_last_run_is_found_on_partitioned_sources(partitioned):
    """The routine run looks up in every partition only the keys of rows it has not counted before,
    and finds a key repeated among the rows it reads among them."""
    add_incident(partitioned, incident_id="old-twin", status="investigating", created_at=AS_OF - 40 * DAY)
    add_incident(partitioned, incident_id="read-again", status="investigating", created_at=AS_OF - DAY)
    refresh(partitioned, full=True)
    now = partitioned.execute(sa.text("select now()")).scalar_one()
    for key in ("old-twin", "read-again"):
        add_incident(partitioned, incident_id=key, status="investigating", created_at=now, updated_at=now)
    result = refresh(partitioned, full=False)
    assert result["mode"] == "incremental"
    # The new copies, and "read-again" (the newest row of the full run, read again within the
    # lookback); the old twin is not read, so it stays counted until the next full refresh.
    assert result["unusable"] == {"incidents": {"id_duplicated": 3}}
    assert summary_row(partitioned).incidents_investigating == 1
    assert refresh(partitioned, full=True)["unusable"] == {"incidents": {"id_duplicated": 4}}
    assert summary_row(partitioned).incidents_investigating == 0
