"""The read model that is a materialized view: listed by \\dm, refreshed by the refresh exactly as a
DBA's own REFRESH MATERIALIZED VIEW CONCURRENTLY refreshes them, never making a reader wait."""

from __future__ import annotations

import psycopg
import pytest
import sqlalchemy as sa

from flywheel_sync.database import db
from tests.platform import AS_OF, DAY, HOUR, MINUTE, add_incident, refresh

MATERIALIZED_VIEWS = ("current_flow",)


def rows_of(connection: sa.Connection, view: str) -> list:
    return connection.execute(sa.text(f"select to_jsonb(row) from flywheel.{view} as row order by 1")).scalars().all()


def add_active_incidents(connection: sa.Connection, count: int, newest: object = AS_OF) -> None:
    for number in range(count):
        add_incident(connection, status="investigating" if number % 3 else "mitigating",
                     alertname=None if number % 4 == 0 else "HighCPU", created_at=newest - number * MINUTE)


def test_dm_lists_the_current_flow(connection):
    listed = connection.execute(sa.text(
        "select c.relname from pg_class c where c.relnamespace = 'flywheel'::regnamespace and c.relkind = 'm'"
        " order by 1")).scalars().all()
    assert listed == sorted(MATERIALIZED_VIEWS)


@pytest.mark.parametrize("tracking", [True, False], ids=["tracked", "without-tracking"])
def test_a_dbas_concurrent_refresh_after_a_refresh_changes_nothing(connection, tracking):
    if not tracking:
        connection.execute(sa.text("drop index incidents_updated_at"))
    add_active_incidents(connection, 14, AS_OF - DAY)
    refresh(connection, AS_OF - 5 * MINUTE)
    add_active_incidents(connection, 3)
    result = connection.execute(sa.text("select flywheel.refresh(:as_of)"), {"as_of": AS_OF}).scalar_one()
    assert result["mode"] == ("incremental" if tracking else "full"), result["mode_reason"]
    written = {view: rows_of(connection, view) for view in MATERIALIZED_VIEWS}
    assert len(written["current_flow"]) == 10
    for view in MATERIALIZED_VIEWS:
        connection.execute(sa.text(f"refresh materialized view concurrently flywheel.{view}"))
        assert rows_of(connection, view) == written[view], view


def test_the_current_flow_follows_its_definition_when_the_flow_does_not_change(connection):
    add_active_incidents(connection, 4, AS_OF - HOUR)
    refresh(connection, AS_OF - MINUTE)
    kept = rows_of(connection, "current_flow")
    refresh(connection, AS_OF)
    assert rows_of(connection, "current_flow") == kept
    assert connection.execute(sa.text(
        "select count(*) from (table flywheel.newest_active_incidents except all table flywheel.current_flow) as newer"
    )).scalar_one() == 0


def test_readers_of_the_current_flow_do_not_wait_for_a_refresh_in_progress(engine, database_url):
    with engine.begin() as connection:
        add_active_incidents(connection, 2, AS_OF - DAY)
        refresh(connection, AS_OF - DAY)
        add_active_incidents(connection, 2)
    with (psycopg.connect(db.libpq_url(database_url)) as refreshing,
          psycopg.connect(db.libpq_url(database_url)) as reader):
        refreshing.execute("select flywheel.refresh(%s)", (AS_OF,))  # transaction left open
        reader.execute("set lock_timeout = '100ms'")
        assert reader.execute("select count(*) from flywheel.current_flow").fetchone()[0] == 2
        assert reader.execute("select computed_at from flywheel.summary").fetchone()[0] == AS_OF - DAY
        refreshing.commit()
        reader.rollback()
        assert reader.execute("select count(*) from flywheel.current_flow").fetchone()[0] == 4
