"""Settings: listed and changed by the CLI, validated by the table itself."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from tests.cli import error_line, run

DEFAULTS = {"timezone": "Asia/Taipei", "min_sample": 10, "stuck_after": "24 hours", "current_flow_limit": 10,
            "dedup_window_min": 30, "mcp_providers": ["k8s", "ssh", "prometheus"], "retention": "90 days",
            "target_playbook_count": 20, "target_execution_success_rate": 0.3}


def test_settings_lists_the_defaults_of_metrics_md(database_url):
    result = run("settings", "--json", database_url=database_url)
    assert result.exit_code == 0, result.output
    assert DEFAULTS.items() <= json.loads(result.output).items()


def test_settings_table_shows_each_key_with_its_description(database_url):
    result = run("settings", database_url=database_url)
    assert "stuck_after" in result.output and "24 hours" in result.output and "Interval > 0" in result.output


@pytest.mark.parametrize("key, typed, stored", [
    ("timezone", "Europe/Berlin", "Europe/Berlin"),
    ("min_sample", "20", 20),
    ("stuck_after", "12 hours", "12 hours"),
    ("mcp_providers", '["k8s"]', ["k8s"]),
    ("target_execution_success_rate", "0.25", 0.25),
    ("full_refresh_at", "23:30", "23:30"),
    ("full_refresh_at", "null", None),
])
def test_settings_set_stores_what_the_user_typed(database_url, engine, key, typed, stored):
    result = run("settings", "set", key, typed, database_url=database_url)
    assert result.exit_code == 0, result.output
    with engine.connect() as connection:
        assert connection.execute(sa.text("select flywheel.setting(:k)"), {"k": key}).scalar_one() == stored


@pytest.mark.parametrize("key, typed, complaint", [
    ("timezone", "Asia/Taipeii", "not a time zone"),
    ("timezone", "UTC+8", "not a time zone"),
    ("min_sample", "-1", "whole number >= 1"),
    ("min_sample", "0", "whole number >= 1"),
    ("min_sample", "2.5", "whole number"),
    ("stuck_after", "soon", "not an interval"),
    ("stuck_after", "0 hours", "longer than zero"),
    ("retention", "-3 days", "longer than zero"),
    ("current_flow_limit", "5000", "0 to 1000"),
    ("target_alertname_null_rate", "1.5", "0 to 1"),
    ("mcp_providers", "[1, 2]", "array of strings"),
    ("full_refresh_at", "3am", "time of day"),
    ("full_refresh_at", "24:00", "time of day"),
])
def test_settings_set_refuses_a_bad_value_with_one_line(database_url, engine, key, typed, complaint):
    with engine.connect() as connection:
        before = connection.execute(sa.text("select flywheel.setting(:k)"), {"k": key}).scalar_one()
    result = run("settings", "set", key, typed, database_url=database_url)
    assert result.exit_code == 1
    line = error_line(result)
    assert complaint in line and "not changed" in line
    with engine.connect() as connection:
        assert connection.execute(sa.text("select flywheel.setting(:k)"), {"k": key}).scalar_one() == before


def test_settings_set_names_the_known_keys_for_an_unknown_one(database_url):
    result = run("settings", "set", "stuck_afer", "1 hour", database_url=database_url)
    assert result.exit_code == 1
    assert "unknown setting 'stuck_afer'" in error_line(result) and "stuck_after" in error_line(result)


def test_plain_sql_update_with_a_bad_value_fails(connection):
    with pytest.raises(sa.exc.IntegrityError, match="not a time zone"):
        connection.execute(sa.text("update flywheel.settings set value = '\"Mars/Olympus\"' where key = 'timezone'"))


def test_plain_sql_cannot_delete_a_setting(connection):
    with pytest.raises(sa.exc.IntegrityError, match="cannot be deleted"):
        connection.execute(sa.text("delete from flywheel.settings where key = 'min_sample'"))


def test_plain_sql_cannot_insert_an_unknown_setting(connection):
    with pytest.raises(sa.exc.IntegrityError, match="unknown setting"):
        connection.execute(sa.text("insert into flywheel.settings values ('colour', '\"blue\"', 'nope')"))
