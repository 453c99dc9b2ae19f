"""`flywheel-sync check`: the platform's tables against the source contract."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from flywheel_sync.database import db
from flywheel_sync.database import refresh as refreshing
from tests.cli import run
from tests.platform import add_incident


def check(database_url: str, *options: str):
    result = run("check", "--json", *options, database_url=database_url)
    return result.exit_code, json.loads(result.output)


def findings(report: dict, level: str) -> list[str]:
    return [f"{item['subject']}: {item['message']}" for item in report["findings"] if item["level"] == level]


def test_reference_schema_holds_the_contract_with_nothing_to_suggest(database_url):
    exit_code, report = check(database_url)
    assert exit_code == 0 and report["ok"] and report["findings"] == []


def test_missing_column_is_an_error_and_exit_1(database_url, engine):
    with engine.begin() as connection:
        connection.execute(sa.text("alter table incidents drop column notification_type"))
    exit_code, report = check(database_url)
    assert exit_code == 1
    assert findings(report, "error") == ["incidents.notification_type: column is missing; it feeds type4_count"]


def test_missing_table_is_an_error(database_url, engine):
    with engine.begin() as connection:
        connection.execute(sa.text("drop table knowledge_entries"))
    assert findings(check(database_url)[1], "error") == [
        "knowledge_entries: table knowledge_entries is missing"]


def test_column_of_an_unusable_type_is_an_error(database_url, engine):
    with engine.begin() as connection:
        connection.execute(sa.text("alter table auto_repair_executions alter column success type text"))
    errors = findings(check(database_url)[1], "error")
    assert errors == ["auto_repair_executions.success: has type text; expected boolean (execution_success_rate)"]


def test_status_in_another_case_is_an_error_with_its_row_count(database_url, engine):
    with engine.begin() as connection:
        for _ in range(3):
            add_incident(connection, status="INVESTIGATING")
    exit_code, report = check(database_url)
    assert exit_code == 1
    assert findings(report, "error") == ["incidents.status: 'INVESTIGATING' in 3 rows is not a status the metrics "
                                         "know; statuses are compared exactly, lowercase: 'investigating'"]


def test_unknown_status_is_a_warning_that_does_not_fail(database_url, engine):
    with engine.begin() as connection:
        add_incident(connection, status="escalated")
    exit_code, report = check(database_url)
    assert exit_code == 0 and "'escalated' in 1 rows" in findings(report, "warning")[0]


def test_missing_index_is_suggested_with_the_statement_to_run(database_url, engine):
    with engine.begin() as connection:
        connection.execute(sa.text("drop index auto_repair_executions_created_at"))
    exit_code, report = check(database_url)
    assert exit_code == 0
    assert [item["statement"] for item in report["findings"]] == [
        'CREATE INDEX CONCURRENTLY auto_repair_executions_created_at ON public.auto_repair_executions (created_at);']


def test_source_schema_option_checks_another_schema(database_url):
    exit_code, report = check(database_url, "--source-schema", "platform")
    assert exit_code == 1 and findings(report, "error") == [
        "platform: schema platform does not exist; pass --source-schema or set the source_schema setting"]


def test_check_prints_a_readable_list(database_url, engine):
    with engine.begin() as connection:
        connection.execute(sa.text("alter table incidents drop column outcome"))
    result = run("check", database_url=database_url)
    assert result.exit_code == 1
    assert "ERROR    incidents.outcome: column is missing" in result.output
    assert "Contract BROKEN: 1 errors" in result.output


# Partitioned source tables ------------------------------------------------------------------------

def _run_each_line(database_url: str, statements: str) -> None:
    """Each printed statement by itself, exactly as printed (CONCURRENTLY refuses a transaction block)."""
    engine = db.create_engine(database_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        for statement in statements.splitlines():
            connection.exec_driver_sql(statement)
    engine.dispose()


def test_partitioned_reference_schema_holds_the_contract_with_nothing_to_suggest(partitioned_database_url):
    exit_code, report = check(partitioned_database_url)
    assert exit_code == 0 and report["findings"] == []


def test_missing_index_on_a_partitioned_table_is_advised_on_only_the_parent_then_per_partition(
        partitioned_database_url):
    engine = db.create_engine(partitioned_database_url, poolclass=sa.pool.NullPool)
    with engine.begin() as connection:
        connection.execute(sa.text("drop index incidents_updated_at"))
        partitions = connection.execute(sa.text(
            "select count(*) from pg_inherits where inhparent = 'incidents'::regclass")).scalar_one()
    engine.dispose()
    statement = check(partitioned_database_url)[1]["findings"][0]["statement"].splitlines()
    assert statement[0] == "CREATE INDEX IF NOT EXISTS incidents_updated_at ON ONLY public.incidents (updated_at);"
    assert statement[1:3] == [
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS incidents_default_updated_at ON public.incidents_default (updated_at);",
        "ALTER INDEX public.incidents_updated_at ATTACH PARTITION public.incidents_default_updated_at;"]
    assert len(statement) == 1 + 2 * partitions


def test_following_the_partitioned_advice_as_printed_makes_the_index_and_keeps_the_refresh_incremental(
        partitioned_database_url):
    engine = db.create_engine(partitioned_database_url, poolclass=sa.pool.NullPool)
    with engine.begin() as connection:
        connection.execute(sa.text("drop index incidents_updated_at"))
        add_incident(connection)
    _run_each_line(partitioned_database_url, check(partitioned_database_url)[1]["findings"][0]["statement"])
    assert check(partitioned_database_url)[1]["findings"] == []
    modes = [refreshing.refresh(engine).mode for _ in range(2)]
    engine.dispose()
    assert modes == ["full", "incremental"]


def _executions_indexed_on_every_partition_only(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        connection.execute(sa.text("drop index auto_repair_executions_created_at"))
        for (partition,) in connection.execute(sa.text(
                "select inhrelid::regclass::text from pg_inherits where inhparent = 'auto_repair_executions'::regclass")):
            connection.execute(sa.text(f"create index on {partition} (created_at)"))


def test_index_on_every_partition_but_not_the_parent_is_not_reported_missing(partitioned_database_url):
    engine = db.create_engine(partitioned_database_url, poolclass=sa.pool.NullPool)
    _executions_indexed_on_every_partition_only(engine)
    engine.dispose()
    assert check(partitioned_database_url)[1]["findings"] == []


def test_index_on_some_partitions_only_is_advised_for_the_others(partitioned_database_url):
    engine = db.create_engine(partitioned_database_url, poolclass=sa.pool.NullPool)
    with engine.begin() as connection:
        connection.execute(sa.text("drop index auto_repair_executions_created_at"))
        connection.execute(sa.text("create index on auto_repair_executions_default (created_at)"))
    engine.dispose()
    statement = check(partitioned_database_url)[1]["findings"][0]["statement"]
    assert "ON public.auto_repair_executions_default" not in statement
    _run_each_line(partitioned_database_url, statement)
    assert check(partitioned_database_url)[1]["findings"] == []


def test_refresh_stays_incremental_with_an_index_on_every_partition_but_not_the_parent(partitioned_database_url):
    engine = db.create_engine(partitioned_database_url, poolclass=sa.pool.NullPool)
    _executions_indexed_on_every_partition_only(engine)
    modes = [refreshing.refresh(engine).mode for _ in range(2)]
    engine.dispose()
    assert modes == ["full", "incremental"]


def test_a_table_the_login_may_not_read_is_not_readable_with_the_grant_to_run_not_missing(worker_url, worker_login):
    """The sync worker's login (flywheel_refresher, no SELECT on the platform's tables): the catalog
    still shows the tables, so the check says what to grant instead of calling them missing."""
    exit_code, report = check(worker_url)
    unreadable = [item for item in report["findings"] if "not readable" in item["message"]]
    assert [(item["level"], item["subject"], item["statement"]) for item in unreadable] == [
        ("warning", table, f"GRANT SELECT ON public.{table} TO {worker_login.name};")
        for table in ("incidents", "knowledge_entries", "auto_repair_executions")]
    assert all(item["message"].startswith(f"not readable by {worker_login.name}: ") for item in unreadable)
    assert not [item for item in report["findings"] if "missing" in item["message"]], report
    assert exit_code == 0, report
