"""flywheel.refresh(): one at a time, never blocking readers, every run logged, history pruned."""

from __future__ import annotations

import threading
import time
import uuid

import psycopg
import pytest
import sqlalchemy as sa

from flywheel_sync.database import db, migrate, releases
from flywheel_sync.database.refresh import refresh as refresh_from_python
from flywheel_sync.errors import RefreshBusy, RefreshFailed
from flywheel_sync.paths import SQL_DIR
from flywheel_sync.urls import mask
from tests.cli import error_line, run
from tests.platform import (
    AS_OF, DAY, MINUTE, TAIPEI_MIDNIGHT, add_execution, add_executions, add_incident, add_knowledge_entry, refresh,
    set_setting,
)

REFRESH_LOCK = "select flywheel.take_refresh_lock()"


def raw_connection(database_url: str, **options) -> psycopg.Connection:
    return psycopg.connect(db.libpq_url(database_url), **options)


def set_setting_now(engine, key: str, value: object) -> None:
    """Set a setting in a transaction of its own, so other sessions see it."""
    with engine.begin() as connection:
        set_setting(connection, key, value)


def test_refresh_works_as_plain_sql_with_no_client_logic(database_url):
    with raw_connection(database_url, autocommit=True) as connection:
        connection.execute("set role flywheel_refresher")
        result = connection.execute("select flywheel.refresh()").fetchone()[0]
        assert result["status"] == "ok"
        assert connection.execute("select count(*) from flywheel.snapshots").fetchone()[0] == 1


def test_run_refresh_fails_the_scheduled_job_yet_keeps_the_failure_on_record(engine, database_url):
    with engine.begin() as connection:
        connection.execute(sa.text("drop table auto_repair_executions"))
    with raw_connection(database_url, autocommit=True) as connection:
        connection.execute("set role flywheel_refresher")
        with pytest.raises(psycopg.errors.UndefinedTable, match="flywheel refresh failed"):
            connection.execute("call flywheel.run_refresh()")
        assert connection.execute("select status from flywheel.refresh_log").fetchone()[0] == "failed"


def test_run_refresh_succeeds_quietly(database_url):
    with raw_connection(database_url, autocommit=True) as connection:
        connection.execute("call flywheel.run_refresh()")
        assert connection.execute("select status from flywheel.refresh_log").fetchone()[0] == "ok"


def test_run_refresh_full_runs_a_full_refresh(database_url):
    with raw_connection(database_url, autocommit=True) as connection:
        connection.execute("call flywheel.run_refresh()")
        connection.execute("call flywheel.run_refresh(full => true)")
        modes = connection.execute("select mode from flywheel.refresh_log order by refresh_id").fetchall()
        assert modes[-1][0] == "full"


def test_run_refresh_gives_up_after_refresh_lock_wait(engine, database_url):
    set_setting_now(engine, "refresh_lock_wait", "100 milliseconds")
    with raw_connection(database_url) as holder, raw_connection(database_url, autocommit=True) as scheduler:
        holder.execute(REFRESH_LOCK)
        with pytest.raises(psycopg.errors.LockNotAvailable, match="another flywheel refresh is running"):
            scheduler.execute("call flywheel.run_refresh()")


def test_second_refresh_waits_for_the_first_then_runs(engine, database_url):
    with raw_connection(database_url) as holder:
        holder.execute(REFRESH_LOCK)
        threading.Timer(0.5, holder.commit).start()
        started = time.monotonic()
        result = refresh_from_python(engine)
        assert result.status == "ok" and time.monotonic() - started >= 0.4


def test_second_refresh_gives_up_after_refresh_lock_wait_with_a_clear_message(engine, database_url):
    set_setting_now(engine, "refresh_lock_wait", "200 milliseconds")
    with raw_connection(database_url) as holder:
        holder.execute(REFRESH_LOCK)
        with pytest.raises(RefreshBusy, match="another flywheel refresh is running"):
            refresh_from_python(engine)


def test_cli_refresh_busy_is_one_line_and_exit_1(engine, database_url):
    set_setting_now(engine, "refresh_lock_wait", "100 milliseconds")
    with raw_connection(database_url) as holder:
        holder.execute(REFRESH_LOCK)
        result = run("refresh", database_url=database_url)
    assert result.exit_code == 1
    assert "another flywheel refresh is running" in error_line(result)


def test_reader_is_not_blocked_by_a_refresh_in_progress(engine, database_url):
    with engine.begin() as connection:
        refresh(connection, AS_OF - DAY)
    with raw_connection(database_url) as refreshing, raw_connection(database_url) as reader:
        refreshing.execute("select flywheel.refresh(%s)", (AS_OF,))  # transaction left open
        reader.execute("set lock_timeout = '100ms'")
        seen = reader.execute("select computed_at from flywheel.summary").fetchone()[0]
        assert seen == AS_OF - DAY
        reader.execute("select flywheel.summary_json(), flywheel.prometheus_text()")
        refreshing.commit()


def test_refresh_log_records_each_step_with_rows_and_duration(connection):
    add_incident(connection, created_at=AS_OF - DAY)
    refresh(connection)
    steps = connection.execute(sa.text("select steps from flywheel.refresh_log")).scalar_one()
    by_name = {step["step"]: step for step in steps}
    assert by_name["daily_incidents"]["rows"] == 1
    assert all(step["ms"] >= 0 for step in steps)


def test_failed_refresh_is_recorded_and_keeps_the_previous_metrics(engine):
    with engine.begin() as connection:
        refresh(connection, AS_OF - DAY)
        connection.execute(sa.text("alter table incidents rename column alertname to alert_name"))
    with pytest.raises(RefreshFailed, match="alertname"):
        refresh_from_python(engine)
    with engine.connect() as connection:
        log = connection.execute(sa.text("select status, error from flywheel.refresh_log order by refresh_id")).all()
        assert [row.status for row in log] == ["ok", "failed"] and "alertname" in log[1].error
        assert connection.execute(sa.text("select computed_at from flywheel.summary")).scalar_one() == AS_OF - DAY


def test_cli_failed_refresh_points_to_check(engine, database_url):
    with engine.begin() as connection:
        connection.execute(sa.text("drop table knowledge_entries"))
    result = run("refresh", database_url=database_url)
    assert result.exit_code == 1
    assert "flywheel-sync check" in error_line(result)


def test_each_refresh_appends_one_snapshot_and_summary_shows_the_newest(connection):
    add_incident(connection, created_at=AS_OF - DAY)
    refresh(connection, AS_OF - DAY)
    add_incident(connection, created_at=AS_OF - DAY)
    refresh(connection)
    rows = connection.execute(sa.text("select incidents_total from flywheel.snapshots order by snapshot_id")).all()
    assert [row[0] for row in rows] == [1, 2]
    assert connection.execute(sa.text("select incidents_total from flywheel.summary")).scalar_one() == 2


def test_daily_incidents_split_at_taipei_midnight(connection):
    add_incident(connection, created_at=TAIPEI_MIDNIGHT, alertname=None, status="investigating")
    add_incident(connection, created_at=TAIPEI_MIDNIGHT - MINUTE)
    refresh(connection)
    rows = connection.execute(sa.text(
        "select day::text, day_start, incidents_created, alertname_missing, status_investigating, status_resolved"
        " from flywheel.daily_incidents order by day")).all()
    assert [tuple(row) for row in rows] == [("2026-11-27", TAIPEI_MIDNIGHT - DAY, 1, 0, 0, 1),
                                            ("2026-11-28", TAIPEI_MIDNIGHT, 1, 1, 1, 0)]


def test_daily_executions_count_successes_per_day(connection):
    add_executions(connection, successes=2, failures=1, created_at=TAIPEI_MIDNIGHT + MINUTE)
    add_execution(connection, success=None, created_at=TAIPEI_MIDNIGHT - MINUTE)
    refresh(connection)
    rows = connection.execute(sa.text(
        "select day::text, executions, successes from flywheel.daily_executions order by day")).all()
    assert [tuple(row) for row in rows] == [("2026-11-27", 1, 0), ("2026-11-28", 3, 2)]


def test_daily_knowledge_counts_entries_still_unvectorized(connection):
    add_knowledge_entry(connection, vectorized=False, created_at=TAIPEI_MIDNIGHT)
    add_knowledge_entry(connection, created_at=TAIPEI_MIDNIGHT)
    refresh(connection)
    rows = connection.execute(sa.text(
        "select day::text, entries_created, entries_unvectorized from flywheel.daily_knowledge")).all()
    assert [tuple(row) for row in rows] == [("2026-11-28", 2, 1)]


# Issue 14, as_of: nothing a flywheel_refresher can pass deletes history or stops the nightly full refresh.
def test_a_refresher_cannot_delete_history_with_an_as_of_in_the_future(engine, database_url):
    with engine.begin() as connection:
        refresh(connection, AS_OF - DAY)
        refresh(connection, AS_OF)
    with raw_connection(database_url, autocommit=True) as connection:
        connection.execute("set role flywheel_refresher")
        result = connection.execute("select flywheel.refresh('9000-01-01')").fetchone()[0]
        assert result["status"] == "failed" and result["sqlstate"] == "22023"
        assert result["error"].startswith("as_of 9000-01-01 00:00:00+00 is out of bounds")
    with engine.connect() as connection:
        assert connection.execute(sa.text("select count(*) from flywheel.snapshots")).scalar_one() == 2
        assert connection.execute(sa.text("select full_at from flywheel.refresh_state")).scalar_one() == AS_OF
        assert connection.execute(sa.text("select count(*) from flywheel.refresh_log")).scalar_one() == 3


@pytest.mark.parametrize("as_of", ["infinity", "-infinity", "294276-12-31 00:00:00+00", "1000-01-01 00:00:00+00"])
def test_an_as_of_out_of_bounds_is_refused_in_one_line(connection, as_of):
    result = connection.execute(sa.text("select flywheel.refresh(cast(:as_of as timestamptz))"),
                                {"as_of": as_of}).scalar_one()
    assert (result["status"], result["sqlstate"], result["computed_at"]) == ("failed", "22023", None)
    assert "out of bounds: it must lie between now() - 100 years and now() + 5 minutes" in result["error"]


# Issue 14, failures: every one lands in refresh_log with its SQLSTATE and its cause.
def last_log(engine) -> sa.Row:
    with engine.connect() as connection:
        return connection.execute(sa.text("select * from flywheel.refresh_log order by refresh_id desc limit 1")).one()


def test_a_lock_wait_that_gives_up_is_recorded(engine, database_url):
    set_setting_now(engine, "refresh_lock_wait", "100 milliseconds")
    with raw_connection(database_url) as holder:
        holder.execute("select flywheel.refresh()")  # transaction left open: it holds the refresh lock
        with pytest.raises(RefreshBusy, match="another flywheel refresh is running"):
            refresh_from_python(engine)
        holder.rollback()
    log = last_log(engine)
    assert (log.status, log.sqlstate) == ("failed", "55P03") and "refresh_lock_wait (100 milliseconds)" in log.error


def test_a_refresh_cancelled_by_refresh_statement_timeout_is_recorded_naming_it(engine, database_url):
    set_setting_now(engine, "refresh_statement_timeout", "1 second")
    set_setting_now(engine, "refresh_lock_timeout", "1 day")
    with raw_connection(database_url) as holder:
        holder.execute("lock table incidents in access exclusive mode")
        with pytest.raises(RefreshFailed, match="statement timeout.*the refresh_statement_timeout setting"):
            refresh_from_python(engine)
        holder.rollback()
    log = last_log(engine)
    assert (log.status, log.sqlstate) == ("failed", "57014")


def test_a_failure_while_reading_the_settings_is_recorded(engine):
    with engine.begin() as connection:
        connection.execute(sa.text("alter table flywheel.settings disable trigger settings_validate;"
                                   " update flywheel.settings set value = '99999999999999999999999' where key = 'min_sample';"
                                   " alter table flywheel.settings enable trigger settings_validate"))
    with pytest.raises(RefreshFailed, match="bigint"):
        refresh_from_python(engine)
    assert (last_log(engine).status, last_log(engine).sqlstate) == ("failed", "22003")


def run_refresh_cancelled_by_a_database_statement_timeout(engine, database_url: str, holding: str) -> sa.Row:
    """CALL flywheel.run_refresh() in a database whose statement_timeout is 300 ms, while another session
    runs ``holding`` in an open transaction; the refresh_log row it left."""
    with raw_connection(database_url) as holder:
        holder.execute(holding)
        with raw_connection(database_url, autocommit=True) as admin:
            admin.execute(f"alter database {engine.url.database} set statement_timeout = '300ms'")
        with raw_connection(database_url, autocommit=True) as scheduler:
            with pytest.raises(psycopg.errors.QueryCanceled, match="flywheel refresh failed"):
                scheduler.execute("call flywheel.run_refresh()")
        holder.rollback()
    return last_log(engine)


def test_a_database_statement_timeout_cancelling_run_refresh_is_recorded_as_such(engine, database_url):
    log = run_refresh_cancelled_by_a_database_statement_timeout(engine, database_url,
                                                                "lock table incidents in access exclusive mode")
    assert (log.status, log.sqlstate) == ("failed", "57014")
    assert ("statement_timeout 300ms, set for the database (ALTER DATABASE ... SET statement_timeout),"
            " not by the refresh_statement_timeout setting") in log.error


def test_a_database_statement_timeout_is_not_reported_as_refresh_statement_timeout(engine, database_url):
    set_setting_now(engine, "refresh_lock_wait", "1 second")
    with raw_connection(database_url) as holder:
        holder.execute("select flywheel.refresh()")  # transaction left open: it holds the refresh lock
        with raw_connection(database_url, autocommit=True) as admin:
            admin.execute(f"alter database {engine.url.database} set statement_timeout = '300ms'")
        fresh = db.create_engine(database_url, poolclass=sa.pool.NullPool)
        with pytest.raises(RefreshBusy, match="another flywheel refresh is running"):
            refresh_from_python(fresh)
        holder.rollback()


# Issue 14, the lock: it cannot outlive its transaction, and no login outside the flywheel roles can take it.
def test_a_cancelled_run_refresh_leaves_no_lock_in_its_long_lived_session(engine, database_url):
    set_setting_now(engine, "refresh_lock_wait", "200 milliseconds")
    with raw_connection(database_url, autocommit=True) as pooled:
        with raw_connection(database_url) as holder:
            holder.execute("lock table incidents in access exclusive mode")
            pooled.execute("set statement_timeout = '300ms'")
            with pytest.raises(psycopg.errors.QueryCanceled):
                pooled.execute("call flywheel.run_refresh()")
            holder.rollback()
        assert refresh_from_python(engine).status == "ok"


def test_a_login_without_flywheel_roles_cannot_block_the_refresh(engine, database_url):
    set_setting_now(engine, "refresh_lock_wait", "100 milliseconds")
    stranger = f"flywheel_test_stranger_{uuid.uuid4().hex[:8]}"
    with raw_connection(database_url, autocommit=True) as admin:
        admin.execute(f"create role {stranger}")
        admin.execute(f"grant {stranger} to current_user")  # SET ROLE without superuser (CI's production mode)
        try:
            with raw_connection(database_url, autocommit=True) as session:
                session.execute(f"set role {stranger}")
                session.execute("select pg_advisory_lock(x'666c7977'::integer, 1)")  # the lock of releases 0001-0003
                assert refresh_from_python(engine).status == "ok"
                for role in (stranger, "flywheel_refresher"):
                    session.execute(f"set role {role}")
                    with pytest.raises(psycopg.errors.InsufficientPrivilege):
                        session.execute("select from flywheel.refresh_lock for update")
        finally:
            admin.execute(f"drop role {stranger}")


def test_cli_refresh_says_when_the_metrics_are_as_of_in_the_timezone_setting_with_its_offset(engine, database_url):
    set_setting_now(engine, "timezone", "America/New_York")
    result = run("refresh", "--as-of", "2026-11-28T16:30:00+00:00", database_url=database_url)
    assert result.exit_code == 0, result.output
    assert "; metrics as of 2026-11-28T11:30:00-05:00" in result.output


def test_cli_refresh_on_an_older_schema_says_to_migrate(engine, database_url):
    migrate.downgrade(engine, "0003")
    result = run("refresh", database_url=database_url)
    assert result.exit_code == 1
    assert error_line(result) == ("Error: schema flywheel is older than this flywheel-sync (it has no "
                                  "flywheel.wait_for_refresh_lock(boolean)): run `flywheel-sync migrate`")


def test_cli_refresh_without_schema_flywheel_says_to_migrate_first(empty_database_url):
    result = run("refresh", database_url=empty_database_url)
    assert result.exit_code == 1
    assert error_line(result) == (f"Error: schema flywheel does not exist in {mask(empty_database_url)}: "
                                  "run `flywheel-sync migrate` first")


def test_cli_refresh_says_how_many_source_rows_it_skipped_and_why(engine, database_url):
    with engine.begin() as connection:
        connection.execute(sa.text("alter table incidents drop constraint incidents_pkey,"
                                   " alter column incident_id drop not null"))
        add_incident(connection, incident_id=None)
    result = run("refresh", database_url=database_url)
    assert result.exit_code == 0, result.output
    assert ("source rows skipped, unusable (flywheel-sync check lists them): incidents id_missing 1"
            in result.output.splitlines())


def test_a_database_statement_timeout_cutting_run_refresh_s_wait_short_is_recorded(engine, database_url):
    set_setting_now(engine, "refresh_lock_wait", "1 minute")
    # The open transaction holds the refresh lock.
    log = run_refresh_cancelled_by_a_database_statement_timeout(engine, database_url, "select flywheel.refresh()")
    assert (log.status, log.sqlstate) == ("failed", "57014") and "set for the database" in log.error


def test_flywheel_sync_refresh_runs_as_a_login_granted_only_flywheel_refresher(database_url):
    refresher = db.create_engine(database_url, poolclass=sa.pool.NullPool,
                                 connect_args={"options": "-c role=flywheel_refresher"})
    with refresher.connect() as connection:
        assert connection.execute(sa.text("select current_user")).scalar_one() == "flywheel_refresher"
    assert refresh_from_python(refresher).status == "ok"
    assert refresh_from_python(refresher, full=True).status == "ok"


def test_waits_and_timeouts_stored_before_their_bounds_are_cut_to_the_server_limit(engine):
    with engine.begin() as connection:
        connection.execute(sa.text(
            "alter table flywheel.settings disable trigger settings_validate;"
            " update flywheel.settings set value = '\"100 days\"' where key in ('refresh_lock_wait', 'refresh_lock_timeout');"
            " update flywheel.settings set value = '\"1000000 years\"' where key = 'refresh_statement_timeout';"
            " alter table flywheel.settings enable trigger settings_validate"))
    assert refresh_from_python(engine).status == "ok"
    with engine.connect() as connection:
        assert connection.execute(sa.text("select flywheel.setting_milliseconds('refresh_lock_wait')")).scalar_one() == "2147483647ms"


def test_the_refresh_function_itself_stays_under_150_lines():
    # The orchestrator: lock, mode, one call per step (docs/refresh.md, "The steps"); the work is in the steps.
    text = releases.head_file("refresh").read_text()
    definition = text[text.index("create function flywheel.refresh("):text.index("\n$$;", text.index("as $$")) + 4]
    assert len(definition.splitlines()) < 150


def test_no_sql_file_exceeds_300_lines():
    longer = {path.relative_to(SQL_DIR).as_posix(): lines for path in SQL_DIR.glob("**/*.sql")
              if (lines := len(path.read_text().splitlines())) > 300}
    assert longer == {}
