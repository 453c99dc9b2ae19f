"""The three output shapes of metrics.md: Summary JSON, Flywheel JSON and Prometheus text."""

from __future__ import annotations

import math
from datetime import datetime

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from tests.platform import (
    AS_OF, DAY, HOUR, MINUTE, TAIPEI, add_execution, add_executions, add_incident, add_knowledge_entry, refresh,
    set_setting,
)

SUMMARY_KEYS = {"playbook_count", "execution_success_rate", "today_processed", "flywheel_conversions_today",
                "km_vectorized_rate", "km_unvectorized_count", "alertname_null_rate", "incidents_stuck",
                "computed_at"}
OLD_GAUGES = {"awoooi_flywheel_playbook_count", "awoooi_flywheel_execution_success_rate",
              "awoooi_flywheel_km_unvectorized_count", "awoooi_flywheel_alertname_null_rate",
              "awoooi_flywheel_incidents_stuck", "awoooi_flywheel_km_vectorized_rate"}


def flywheel_json(connection) -> dict:
    return connection.execute(sa.text("select flywheel.flywheel_json()")).scalar_one()


def prometheus_text(connection, with_timestamps: bool = False) -> str:
    return connection.execute(sa.text("select flywheel.prometheus_text(:t)"), {"t": with_timestamps}).scalar_one()


def samples(text: str) -> dict:
    return {sample.name: sample for family in text_string_to_metric_families(text) for sample in family.samples
            if not sample.labels}


def test_summary_json_keeps_every_key_of_the_old_endpoint(connection):
    assert SUMMARY_KEYS <= set(refresh(connection))


def test_summary_computed_at_is_iso_8601_with_the_taipei_offset(connection):
    computed_at = refresh(connection, AS_OF.replace(microsecond=123456))["computed_at"]
    assert computed_at == "2026-11-28T16:30:00.123456+08:00"


def test_computed_at_has_no_fraction_when_the_clock_has_none(connection):
    assert refresh(connection)["computed_at"] == "2026-11-28T16:30:00+08:00"


def test_computed_at_follows_the_timezone_setting(connection):
    set_setting(connection, "timezone", "America/New_York")
    assert refresh(connection)["computed_at"] == "2026-11-28T03:30:00-05:00"


def test_flywheel_json_has_six_nodes_with_their_old_fields(connection):
    refresh(connection)
    nodes = flywheel_json(connection)["nodes"]
    assert set(nodes) == {"monitoring", "deduplication", "diagnosis", "reasoning", "execution", "learning"}
    assert nodes["deduplication"] == {"status": "active", "dedup_window_min": 30}
    assert nodes["diagnosis"]["mcp_providers_used"] == ["k8s", "ssh", "prometheus"]
    assert {"count_1h", "status"} <= set(nodes["monitoring"])
    assert {"today_processed", "status"} <= set(nodes["reasoning"])
    assert {"success_today", "status"} <= set(nodes["execution"])


def test_nodes_are_idle_without_data(connection):
    refresh(connection)
    nodes = flywheel_json(connection)["nodes"]
    assert {name: node["status"] for name, node in nodes.items() if name != "deduplication"} == dict.fromkeys(
        ["monitoring", "diagnosis", "reasoning", "execution", "learning"], "idle")


def test_nodes_are_active_when_their_data_says_so(connection):
    add_incident(connection, status="investigating", created_at=AS_OF - 10 * MINUTE)
    add_execution(connection, created_at=AS_OF - 23 * HOUR)
    add_knowledge_entry(connection, created_at=AS_OF - 23 * HOUR)
    refresh(connection)
    nodes = flywheel_json(connection)["nodes"]
    assert {name: node["status"] for name, node in nodes.items()} == dict.fromkeys(nodes, "active")


def test_flywheel_json_settings_take_effect_at_the_next_refresh(connection):
    refresh(connection)
    set_setting(connection, "dedup_window_min", 45)
    assert flywheel_json(connection)["nodes"]["deduplication"]["dedup_window_min"] == 30
    refresh(connection)
    assert flywheel_json(connection)["nodes"]["deduplication"]["dedup_window_min"] == 45


def test_current_flow_lists_the_newest_active_incidents_up_to_the_limit(connection):
    for minutes in range(12):
        add_incident(connection, incident_id=f"INC-{minutes:02d}", status="investigating",
                     created_at=AS_OF - minutes * MINUTE)
    add_incident(connection, incident_id="INC-resolved", status="resolved", created_at=AS_OF)
    refresh(connection)
    flow = flywheel_json(connection)["current_flow"]
    assert [item["incident_id"] for item in flow] == [f"INC-{minutes:02d}" for minutes in range(10)]


def test_current_flow_breaks_created_at_ties_by_incident_id_descending(connection):
    for incident_id in ("INC-b", "INC-c", "INC-a"):
        add_incident(connection, incident_id=incident_id, status="mitigating", created_at=AS_OF)
    refresh(connection)
    assert [item["incident_id"] for item in flywheel_json(connection)["current_flow"]] == ["INC-c", "INC-b", "INC-a"]


def test_current_flow_maps_status_to_node_and_missing_alertname_to_unknown(connection):
    add_incident(connection, incident_id="INC-1", status="investigating", alertname=None, created_at=AS_OF - MINUTE)
    add_incident(connection, incident_id="INC-2", status="mitigating", alertname="  ", created_at=AS_OF - 2 * MINUTE)
    add_incident(connection, incident_id="INC-3", status="mitigating", alertname="DiskFull",
                 created_at=datetime(2026, 11, 28, 16, 29, 10, tzinfo=TAIPEI))
    refresh(connection)
    flow = flywheel_json(connection)["current_flow"]
    assert flow == [
        {"incident_id": "INC-3", "alertname": "DiskFull", "current_node": "execution", "ts": "2026-11-28T16:29:10+08:00"},
        {"incident_id": "INC-1", "alertname": "unknown", "current_node": "diagnosis", "ts": "2026-11-28T16:29:00+08:00"},
        {"incident_id": "INC-2", "alertname": "unknown", "current_node": "execution", "ts": "2026-11-28T16:28:00+08:00"},
    ]


def test_current_flow_limit_setting_shortens_the_list(connection):
    for _ in range(3):
        add_incident(connection, status="investigating", created_at=AS_OF)
    set_setting(connection, "current_flow_limit", 1)
    refresh(connection)
    assert len(flywheel_json(connection)["current_flow"]) == 1


def test_prometheus_text_has_the_six_old_gauges_with_help_and_type(connection):
    refresh(connection)
    families = {family.name: family for family in text_string_to_metric_families(prometheus_text(connection))}
    for name in OLD_GAUGES:
        assert families[name].type == "gauge"
        assert families[name].documentation
    assert prometheus_text(connection).endswith("\n")


def test_prometheus_rate_is_nan_when_the_sample_is_insufficient(connection):
    refresh(connection)
    assert math.isnan(samples(prometheus_text(connection))["awoooi_flywheel_execution_success_rate"].value)


def test_prometheus_rate_has_four_decimals(connection):
    add_executions(connection, successes=1, failures=2, created_at=AS_OF - HOUR)
    set_setting(connection, "min_sample", 3)
    refresh(connection)
    assert "awoooi_flywheel_execution_success_rate 0.3333\n" in prometheus_text(connection)


def test_prometheus_samples_carry_no_timestamp_unless_asked(connection):
    refresh(connection)
    assert samples(prometheus_text(connection))["awoooi_flywheel_playbook_count"].timestamp is None
    stamped = samples(prometheus_text(connection, with_timestamps=True))["awoooi_flywheel_playbook_count"]
    assert stamped.timestamp == AS_OF.timestamp()


def test_prometheus_values_equal_the_summary(connection):
    add_incident(connection, alertname=None, status="investigating", created_at=AS_OF - 2 * DAY)
    add_knowledge_entry(connection, vectorized=False)
    summary = refresh(connection)
    values = samples(prometheus_text(connection))
    for key in ("playbook_count", "km_unvectorized_count", "alertname_null_rate", "incidents_stuck",
                "km_vectorized_rate", "today_processed"):
        assert values[f"awoooi_flywheel_{key}"].value == pytest.approx(summary[key])


def test_outputs_say_what_to_do_before_the_first_refresh(connection):
    with pytest.raises(sa.exc.DBAPIError, match="not been computed"):
        connection.execute(sa.text("select flywheel.summary_json()"))
