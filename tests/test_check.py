"""`flywheel-sync check`: the platform's tables against the source contract."""

from __future__ import annotations

import json

import sqlalchemy as sa

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
        "knowledge_entries: table knowledge_entries is missing (or not visible to this user)"]


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
