"""execution_success_rate and its fallbacks (metrics.md), with the source and sample beside it."""

from __future__ import annotations

import sqlalchemy as sa

from tests.platform import (
    AS_OF, DAY, HOUR, MINUTE, add_execution, add_executions, add_playbook, refresh, set_setting,
)


def rate_of(connection) -> tuple:
    summary = refresh(connection)
    return (summary["execution_success_rate"], summary["execution_success_rate_source"],
            summary["execution_success_sample"])


def test_rate_uses_24h_when_it_holds_exactly_min_sample(connection):
    add_executions(connection, successes=4, failures=6, created_at=AS_OF - HOUR)
    assert rate_of(connection) == (0.4, "24h", 10)


def test_rate_falls_back_to_7d_when_24h_has_nine(connection):
    add_executions(connection, successes=3, failures=6, created_at=AS_OF - HOUR)
    add_executions(connection, successes=1, failures=0, created_at=AS_OF - 3 * DAY)
    assert rate_of(connection) == (0.4, "7d", 10)


def test_execution_exactly_24_hours_old_is_in_the_24h_window(connection):
    add_executions(connection, successes=9, failures=0, created_at=AS_OF - HOUR)
    add_execution(connection, success=False, created_at=AS_OF - 24 * HOUR)
    assert rate_of(connection) == (0.9, "24h", 10)


def test_execution_a_minute_older_than_24_hours_is_only_in_the_7d_window(connection):
    add_executions(connection, successes=9, failures=0, created_at=AS_OF - HOUR)
    add_execution(connection, success=False, created_at=AS_OF - 24 * HOUR - MINUTE)
    assert rate_of(connection) == (0.9, "7d", 10)


def test_execution_exactly_7_days_old_is_in_the_7d_window(connection):
    add_executions(connection, successes=9, failures=0, created_at=AS_OF - 7 * DAY)
    add_execution(connection, success=True, created_at=AS_OF - HOUR)
    assert rate_of(connection) == (1.0, "7d", 10)


def test_rate_is_null_when_the_windows_hold_some_but_fewer_than_min_sample(connection):
    add_executions(connection, successes=2, failures=7, created_at=AS_OF - 2 * DAY)
    add_playbook(connection, success_count=100, failure_count=0)
    assert rate_of(connection) == (None, "insufficient", 9)


def test_rate_falls_back_to_approved_playbooks_when_7_days_hold_no_execution(connection):
    add_executions(connection, successes=50, failures=0, created_at=AS_OF - 8 * DAY)
    add_playbook(connection, success_count=3, failure_count=1)
    add_playbook(connection, success_count=3, failure_count=3)
    assert rate_of(connection) == (0.6, "playbooks", 10)


def test_playbook_fallback_ignores_playbooks_that_are_not_approved(connection):
    add_playbook(connection, success_count=3, failure_count=7)
    add_playbook(connection, status="draft", success_count=100, failure_count=0)
    add_playbook(connection, status="deprecated", success_count=100, failure_count=0)
    assert rate_of(connection) == (0.3, "playbooks", 10)


def test_playbook_fallback_ignores_invalid_records(connection):
    add_playbook(connection, success_count=3, failure_count=7)
    add_playbook(connection, valid=False, invalid_reason="success_count is not an integer")
    assert rate_of(connection) == (0.3, "playbooks", 10)


def test_rate_is_null_when_approved_playbooks_ran_fewer_than_min_sample(connection):
    add_playbook(connection, success_count=5, failure_count=4)
    assert rate_of(connection) == (None, "insufficient", 9)


def test_rate_is_null_on_a_fresh_deployment(connection):
    assert rate_of(connection) == (None, "insufficient", 0)


def test_execution_with_null_success_counts_in_the_total_as_a_non_success(connection):
    add_executions(connection, successes=5, failures=4, created_at=AS_OF - HOUR)
    add_execution(connection, success=None, created_at=AS_OF - HOUR)
    assert rate_of(connection) == (0.5, "24h", 10)


def test_min_sample_setting_changes_the_window_at_the_next_refresh(connection):
    add_executions(connection, successes=1, failures=1, created_at=AS_OF - HOUR)
    assert rate_of(connection)[1] == "insufficient"
    set_setting(connection, "min_sample", 2)
    assert rate_of(connection) == (0.5, "24h", 2)


def test_rate_is_rounded_to_four_decimals_in_json_and_exact_in_the_view(connection):
    add_executions(connection, successes=1, failures=2, created_at=AS_OF - HOUR)
    set_setting(connection, "min_sample", 3)
    assert rate_of(connection)[0] == 0.3333
    exact = connection.execute(sa.text("select execution_success_rate from flywheel.summary")).scalar_one()
    assert exact == 1 / 3


def test_playbook_count_counts_valid_approved_playbooks_only(connection):
    add_playbook(connection)
    add_playbook(connection)
    add_playbook(connection, status="draft")
    add_playbook(connection, valid=False)
    summary = refresh(connection)
    assert (summary["playbook_count"], summary["playbooks_invalid"]) == (2, 1)
