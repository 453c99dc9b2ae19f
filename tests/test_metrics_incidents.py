"""Incident metrics of metrics.md: their windows, boundaries and Fixes, one behaviour a test."""

from __future__ import annotations

import sqlalchemy as sa

from tests.platform import AS_OF, DAY, HOUR, MINUTE, TAIPEI_MIDNIGHT, add_incident, refresh, set_setting


def test_alertname_null_rate_is_zero_without_incidents(connection):
    assert refresh(connection)["alertname_null_rate"] == 0


def test_alertname_null_rate_counts_null_alertnames(connection):
    add_incident(connection, alertname=None)
    add_incident(connection, alertname="HighCPU")
    assert refresh(connection)["alertname_null_rate"] == 0.5


def test_alertname_null_rate_counts_empty_and_blank_alertnames_as_missing(connection):
    for alertname in ("", "   ", "\t \n"):
        add_incident(connection, alertname=alertname)
    add_incident(connection, alertname=" HighCPU ")
    assert refresh(connection)["alertname_null_rate"] == 0.75


def test_alertname_null_rate_is_rounded_to_four_decimals(connection):
    add_incident(connection, alertname=None)
    add_incident(connection)
    add_incident(connection)
    assert refresh(connection)["alertname_null_rate"] == 0.3333


def test_incident_investigating_exactly_stuck_after_is_stuck(connection):
    add_incident(connection, status="investigating", created_at=AS_OF - 24 * HOUR)
    assert refresh(connection)["incidents_stuck"] == 1


def test_incident_investigating_one_minute_short_of_stuck_after_is_not_stuck(connection):
    add_incident(connection, status="investigating", created_at=AS_OF - 24 * HOUR + MINUTE)
    assert refresh(connection)["incidents_stuck"] == 0


def test_old_incident_in_another_status_is_not_stuck(connection):
    for status in ("mitigating", "resolved", "closed", "INVESTIGATING"):
        add_incident(connection, status=status, created_at=AS_OF - 3 * DAY)
    assert refresh(connection)["incidents_stuck"] == 0


def test_stuck_after_setting_changes_the_threshold_at_the_next_refresh(connection):
    add_incident(connection, status="investigating", created_at=AS_OF - 3 * HOUR)
    assert refresh(connection)["incidents_stuck"] == 0
    set_setting(connection, "stuck_after", "2 hours")
    assert refresh(connection)["incidents_stuck"] == 1


def test_type4_count_needs_type4_and_investigating(connection):
    add_incident(connection, status="investigating", notification_type="TYPE-4")
    add_incident(connection, status="mitigating", notification_type="TYPE-4")
    add_incident(connection, status="investigating", notification_type="TYPE-3")
    add_incident(connection, status="investigating", notification_type=None)
    refresh(connection)
    assert connection.execute(sa.text("select type4_count from flywheel.summary")).scalar_one() == 1


def test_incident_created_at_taipei_midnight_counts_as_today(connection):
    add_incident(connection, created_at=TAIPEI_MIDNIGHT)
    assert refresh(connection)["today_processed"] == 1


def test_incident_created_one_minute_before_taipei_midnight_is_not_today(connection):
    add_incident(connection, created_at=TAIPEI_MIDNIGHT - MINUTE)
    assert refresh(connection)["today_processed"] == 0


def test_incident_created_one_minute_after_taipei_midnight_is_today(connection):
    add_incident(connection, created_at=TAIPEI_MIDNIGHT + MINUTE)
    assert refresh(connection)["today_processed"] == 1


def test_today_starts_at_midnight_of_the_timezone_setting(connection):
    # 16:30 in Taipei is 09:30 in Berlin: an incident at Taipei's 07:00 is Berlin's 00:00, today in both.
    add_incident(connection, created_at=TAIPEI_MIDNIGHT + 7 * HOUR)
    # Taipei's 06:59 is Berlin's 23:59 of the day before.
    add_incident(connection, created_at=TAIPEI_MIDNIGHT + 7 * HOUR - MINUTE)
    assert refresh(connection)["today_processed"] == 2
    set_setting(connection, "timezone", "Europe/Berlin")
    assert refresh(connection)["today_processed"] == 1


def test_count_1h_includes_exactly_one_hour_ago(connection):
    add_incident(connection, created_at=AS_OF - HOUR)
    add_incident(connection, created_at=AS_OF - HOUR - MINUTE)
    refresh(connection)
    assert connection.execute(sa.text("select count_1h from flywheel.summary")).scalar_one() == 1


def test_execution_success_today_counts_json_true_and_string_true(connection):
    add_incident(connection, created_at=AS_OF - HOUR, outcome={"execution_success": True})
    add_incident(connection, created_at=AS_OF - HOUR, outcome={"execution_success": "true"})
    refresh(connection)
    assert connection.execute(sa.text("select execution_success_today from flywheel.summary")).scalar_one() == 2


def test_execution_success_today_ignores_false_flag_followed_by_another_true_field(connection):
    add_incident(connection, created_at=AS_OF - HOUR,
                 outcome={"execution_success": False, "verification_skipped": True})
    add_incident(connection, created_at=AS_OF - HOUR, outcome={"execution_success": "false"})
    add_incident(connection, created_at=AS_OF - HOUR, outcome={"note": "execution_success true"})
    add_incident(connection, created_at=AS_OF - HOUR, outcome=["execution_success", True])
    add_incident(connection, created_at=AS_OF - HOUR, outcome=None)
    refresh(connection)
    assert connection.execute(sa.text("select execution_success_today from flywheel.summary")).scalar_one() == 0


def test_execution_success_today_ignores_successes_created_before_today(connection):
    add_incident(connection, created_at=TAIPEI_MIDNIGHT - MINUTE, outcome={"execution_success": True})
    refresh(connection)
    assert connection.execute(sa.text("select execution_success_today from flywheel.summary")).scalar_one() == 0
