"""Settings: listed and changed by the CLI, validated by the table itself."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flywheel_sync.database.refresh import refresh as refresh_from_python
from tests.cli import error_line, run
from tests.platform import set_setting

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
    ("min_sample", "-1", "whole number from 1"),
    ("min_sample", "0", "whole number from 1"),
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


# Issue 14: values accepted before, after which every refresh failed (some without a refresh_log row).
@pytest.mark.parametrize("key, typed, complaint", [
    ("min_sample", "99999999999999999999999", "from 1 to 1000000000"),
    ("min_sample", "1e400", "from 1 to 1000000000"),
    ("target_playbook_count", "1e400", "from 0 to 1000000000"),
    ("refresh_lock_wait", "100 days", "longer than 1 day"),
    ("refresh_lock_wait", "0 seconds", "longer than zero"),
    ("refresh_lock_timeout", "1000 years", "longer than 1 day"),
    ("refresh_statement_timeout", "1000000 years", "longer than 1 day"),
    ("refresh_statement_timeout", "10 milliseconds", "shorter than 00:00:01"),
    ("stuck_after", "1000000 years", "longer than 10 years"),
    ("retention", "1000000 years", "longer than 100 years"),
    ("retention", "1 hour", "shorter than 1 day"),
    ("timezone", "EST", "not a time zone"),
    ("timezone", "posixrules", "not a time zone"),
    ("timezone", "EST5EDT", "not a time zone"),
    ("timezone", "Etc/GMT+8", "not a time zone"),
    ("timezone", "right/Asia/Taipei", "not a time zone"),
    ("source_schema", "nowhere", "does not hold the tables"),
])
def test_settings_set_refuses_a_value_out_of_its_bounds(database_url, key, typed, complaint):
    result = run("settings", "set", key, typed, database_url=database_url)
    assert result.exit_code == 1
    line = error_line(result)
    assert complaint in line and "not changed" in line and len(line) < 300


@pytest.mark.parametrize("typed", ["NaN", "Infinity", "-Infinity"])
def test_settings_set_refuses_nan_and_infinity_saying_so(database_url, typed):
    result = run("settings", "set", "min_sample", typed, database_url=database_url)
    assert result.exit_code == 1
    assert error_line(result) == f"Error: setting min_sample: {typed} is not a number a setting can hold; the setting was not changed"


def test_plain_sql_cannot_truncate_the_settings(connection):
    with pytest.raises(sa.exc.IntegrityError, match="cannot be truncated"):
        connection.execute(sa.text("truncate flywheel.settings"))


@pytest.mark.parametrize("key, typed", [("timezone", "UTC"), ("timezone", "Japan"), ("retention", "1 day"),
                                        ("refresh_lock_wait", "1 day"), ("stuck_after", "10 years")])
def test_settings_set_takes_a_value_on_its_bounds(database_url, key, typed):
    assert run("settings", "set", key, typed, database_url=database_url).exit_code == 0


INTERVAL_UNITS = ("microseconds", "milliseconds", "seconds", "minutes", "hours", "days", "months", "years")
SETTING_VALUES = {
    "timezone": st.sampled_from(["Asia/Taipei", "UTC", "America/Santiago", "Australia/Lord_Howe", "Pacific/Kiritimati",
                                 "Pacific/Pago_Pago", "EST", "posixrules", "Factory", "GMT", "Etc/GMT-14"]),
    "full_refresh_at": st.one_of(st.none(), st.builds("{:02d}:{:02d}".format, st.integers(0, 25), st.integers(0, 60))),
    "source_schema": st.sampled_from(["public", "flywheel", "pg_catalog", ""]),
    "mcp_providers": st.lists(st.text(max_size=5), max_size=3),
}
WHOLE_NUMBERS = st.one_of(st.integers(-3, 2000), st.integers(-10**30, 10**30), st.sampled_from([10**9, 10**9 + 1]),
                          st.floats(allow_nan=False, allow_infinity=False, width=32))
INTERVALS = st.builds("{} {}".format, st.one_of(st.integers(-5, 5000), st.integers(-10**8, 10**8)),
                      st.sampled_from(INTERVAL_UNITS))


def drawn_value(key: str) -> st.SearchStrategy:
    if key in SETTING_VALUES:
        return SETTING_VALUES[key]
    if key in ("stuck_after", "retention", "refresh_lock_wait", "refresh_lock_timeout", "refresh_statement_timeout"):
        return st.one_of(INTERVALS, st.sampled_from(["soon", "1 day 2 hours", "-1 seconds"]))
    return WHOLE_NUMBERS


SETTING_KEYS = ("timezone", "min_sample", "stuck_after", "current_flow_limit", "dedup_window_min", "mcp_providers",
                "target_playbook_count", "target_execution_success_rate", "target_km_unvectorized_count",
                "target_alertname_null_rate", "target_incidents_stuck", "retention", "source_schema",
                "refresh_lock_wait", "refresh_lock_timeout", "refresh_statement_timeout", "full_refresh_at")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.lists(st.sampled_from(SETTING_KEYS).flatmap(lambda key: st.tuples(st.just(key), drawn_value(key))),
                        min_size=1, max_size=4))
def test_every_value_the_validator_accepts_gives_a_refresh_that_succeeds(engine, changes):
    with engine.begin() as connection:
        for key, value in changes:
            problem = connection.execute(sa.text("select flywheel.setting_problem(:key, cast(:value as jsonb))"),
                                         {"key": key, "value": json.dumps(value)}).scalar_one()
            if problem is None:
                set_setting(connection, key, value)
    assert refresh_from_python(engine).status == "ok"
    assert refresh_from_python(engine, full=True).status == "ok"
    with engine.connect() as connection:
        connection.execute(sa.text("select flywheel.summary_json(), flywheel.flywheel_json(), flywheel.prometheus_text(),"
                                   " (select count(*) from flywheel.summary_targets)"))
