"""The SQL against a plain reading of metrics.md, on random data.

`expected_summary` is metrics.md transcribed into Python as literally as possible, with no concern
for speed; hypothesis draws platforms whose rows sit on and around every boundary (Taipei midnight,
exactly 24 hours, exactly min_sample), and the refresh must agree on every metric.
"""

from __future__ import annotations

from datetime import datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.platform import (
    AS_OF, DAY, HOUR, MINUTE, TAIPEI, TAIPEI_MIDNIGHT, add_execution, add_incident, add_knowledge_entry,
    add_playbook, refresh, set_setting,
)

MIN_SAMPLE = 3
STUCK_AFTER = 24 * HOUR

# Moments that matter, and a minute either side of each.
ANCHORS = [AS_OF, AS_OF - HOUR, AS_OF - 24 * HOUR, AS_OF - 7 * DAY, TAIPEI_MIDNIGHT, AS_OF - 30 * DAY]
moments = st.builds(lambda anchor, shift: anchor + shift * MINUTE, st.sampled_from(ANCHORS), st.sampled_from([-1, 0, 1]))

incidents = st.lists(st.fixed_dictionaries({
    "alertname": st.sampled_from([None, "", "  ", "HighCPU", "DiskFull"]),
    "status": st.sampled_from(["investigating", "mitigating", "resolved", "closed", "Investigating"]),
    "notification_type": st.sampled_from([None, "TYPE-1", "TYPE-4"]),
    "outcome": st.sampled_from([None, {"execution_success": True}, {"execution_success": "true"},
                                {"execution_success": False, "verification_skipped": True}, {"other": True}]),
    "created_at": moments,
}), max_size=12)
executions = st.lists(st.fixed_dictionaries({"success": st.sampled_from([True, False, None]), "created_at": moments}),
                      max_size=12)
entries = st.lists(st.fixed_dictionaries({"vectorized": st.booleans(), "created_at": moments}), max_size=6)
playbooks = st.lists(st.fixed_dictionaries({
    "status": st.sampled_from(["approved", "draft"]), "success_count": st.integers(0, 4),
    "failure_count": st.integers(0, 4), "valid": st.booleans(),
}), max_size=5)


def ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def expected_summary(now: datetime, incident_rows, execution_rows, entry_rows, playbook_rows) -> dict:
    today_start = now.astimezone(TAIPEI).replace(hour=0, minute=0, second=0, microsecond=0)
    missing = [i for i in incident_rows if i["alertname"] is None or i["alertname"].strip() == ""]
    day = [e for e in execution_rows if e["created_at"] >= now - 24 * HOUR]
    week = [e for e in execution_rows if e["created_at"] >= now - 7 * DAY]
    approved = [p for p in playbook_rows if p["valid"] and p["status"] == "approved"]
    runs = sum(p["success_count"] + p["failure_count"] for p in approved)
    if len(day) >= MIN_SAMPLE:
        rate = ratio(sum(e["success"] is True for e in day), len(day))
    elif len(week) >= MIN_SAMPLE:
        rate = ratio(sum(e["success"] is True for e in week), len(week))
    elif week:
        rate = None
    elif runs >= MIN_SAMPLE:
        rate = sum(p["success_count"] for p in approved) / runs
    else:
        rate = None
    unvectorized = sum(not e["vectorized"] for e in entry_rows)
    return {
        "playbook_count": len(approved),
        "execution_success_rate": None if rate is None else round(rate, 4),
        "today_processed": sum(i["created_at"] >= today_start for i in incident_rows),
        "flywheel_conversions_today": sum(e["created_at"] >= today_start for e in entry_rows),
        "km_vectorized_rate": round(ratio(len(entry_rows) - unvectorized, len(entry_rows)) or 0, 4),
        "km_unvectorized_count": unvectorized,
        "alertname_null_rate": round(ratio(len(missing), len(incident_rows)) or 0, 4),
        "incidents_stuck": sum(i["status"] == "investigating" and i["created_at"] <= now - STUCK_AFTER
                               for i in incident_rows),
        "type4_count": sum(i["status"] == "investigating" and i["notification_type"] == "TYPE-4" for i in incident_rows),
        "count_1h": sum(i["created_at"] >= now - HOUR for i in incident_rows),
        "execution_success_today": sum(
            i["created_at"] >= today_start and isinstance(i["outcome"], dict)
            and i["outcome"].get("execution_success") in (True, "true")
            for i in incident_rows),
    }


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(incidents, executions, entries, playbooks)
def test_refresh_agrees_with_metrics_md_on_random_platforms(connection, incident_rows, execution_rows,
                                                            entry_rows, playbook_rows):
    savepoint = connection.begin_nested()
    try:
        set_setting(connection, "min_sample", MIN_SAMPLE)
        for row in incident_rows:
            add_incident(connection, **row)
        for row in execution_rows:
            add_execution(connection, **row)
        for row in entry_rows:
            add_knowledge_entry(connection, **row)
        for row in playbook_rows:
            add_playbook(connection, **row)
        actual = refresh(connection)
        expected = expected_summary(AS_OF, incident_rows, execution_rows, entry_rows, playbook_rows)
        assert {key: actual[key] for key in expected} == expected
    finally:
        savepoint.rollback()
