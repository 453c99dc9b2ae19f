"""The checked-in grafana/ folder: generated, up to date, and in the formats Grafana and Prometheus read."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from flywheel_sync.cli import cli
from flywheel_sync.outputs import grafana

CHECKED_IN = Path(__file__).resolve().parent.parent / "grafana"
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="promtool not installed (apt-get install prometheus)")


def load(relative: str) -> dict:
    """A generated YAML file read back: comment lines, then JSON (which every YAML parser reads)."""
    text = (CHECKED_IN / relative).read_text(encoding="utf-8")
    return json.loads("".join(line for line in text.splitlines(keepends=True) if not line.startswith("#")))


def test_checked_in_folder_equals_the_generated_files():
    assert grafana.differences(CHECKED_IN) == [], "run `flywheel-sync grafana` and commit grafana/"


def test_grafana_check_exits_1_when_a_file_differs_and_0_after_writing(tmp_path):
    runner = CliRunner()
    folder = tmp_path / "grafana"
    assert runner.invoke(cli, ["grafana", "--output", str(folder)]).exit_code == 0
    (folder / "dashboards" / "flywheel.json").write_text("{}\n")
    result = runner.invoke(cli, ["grafana", "--output", str(folder), "--check"])
    assert result.exit_code == 1
    assert "dashboards/flywheel.json differs" in result.output
    assert runner.invoke(cli, ["grafana", "--output", str(folder)]).exit_code == 0
    assert runner.invoke(cli, ["grafana", "--output", str(folder), "--check"]).exit_code == 0


def test_datasource_is_postgresql_with_the_reader_login_and_a_password_from_the_environment():
    (source,) = load("provisioning/datasources/flywheel.yaml")["datasources"]
    assert source["type"] == "grafana-postgresql-datasource"
    assert source["uid"] == grafana.DATASOURCE_UID
    assert source["user"] == "grafana_flywheel"
    assert source["secureJsonData"] == {"password": "${FLYWHEEL_GRAFANA_PASSWORD}"}
    assert {"database", "sslmode", "postgresVersion", "timescaledb"} <= set(source["jsonData"])


def test_dashboard_provider_reads_the_dashboards_folder():
    (provider,) = load("provisioning/dashboards/flywheel.yaml")["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "${FLYWHEEL_GRAFANA_DIR}/dashboards"
    assert (CHECKED_IN / "dashboards" / "flywheel.json").is_file()


def test_dashboard_uid_is_no_folder_uid_and_alert_rules_share_the_dashboards_folder():
    (provider,) = load("provisioning/dashboards/flywheel.yaml")["providers"]
    (group,) = load("provisioning/alerting/flywheel.yaml")["groups"]
    dashboard = json.loads((CHECKED_IN / "dashboards" / "flywheel.json").read_text())
    # Older Grafana stores folders as dashboards: one uid for both breaks ("Dashboard cannot be changed
    # to a folder"). Grafana gives the folder its own uid, and the dashboard's names no folder of ours.
    assert dashboard["uid"] not in {provider.get("folderUid"), "flywheel"}
    # Grafana provisions alert rules (folder by title, the only way its file format names one) before
    # dashboards; a provider with a folderUid would then make a second "Flywheel" or fail
    # (grafana/grafana#87889). Found by the same title, the folder is one, with one uid.
    assert "folderUid" not in provider
    assert group["folder"] == provider["folder"] == grafana.FOLDER


def test_every_panel_queries_the_provisioned_datasource_in_code_mode():
    dashboard = json.loads((CHECKED_IN / "dashboards" / "flywheel.json").read_text())
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    assert {panel["type"] for panel in panels} == {"stat", "timeseries", "table"}
    for panel in panels:
        (target,) = panel["targets"]
        assert panel["datasource"] == target["datasource"] == grafana.DATASOURCE
        assert target["rawQuery"] is True and target["editorMode"] == "code"
        assert target["format"] == ("time_series" if panel["type"] == "timeseries" else "table")


def test_alert_rules_query_in_time_series_format_and_keep_dollar_signs_out_of_labels():
    (group,) = load("provisioning/alerting/flywheel.yaml")["groups"]
    for rule in group["rules"]:
        query = rule["data"][0]
        assert query["datasourceUid"] == grafana.DATASOURCE_UID
        assert query["model"]["format"] == "time_series"
        assert rule["condition"] == rule["data"][-1]["refId"]
        # Grafana expands environment variables in labels (not in queries or annotations).
        assert "$" not in json.dumps(rule["labels"])


def test_prometheus_rules_name_only_the_exported_gauges():
    exported = {"awoooi_flywheel_execution_success_rate", "awoooi_flywheel_incidents_stuck",
                "awoooi_flywheel_km_unvectorized_count", "awoooi_flywheel_alertname_null_rate",
                "awoooi_flywheel_playbook_count", "awoooi_flywheel_last_refresh_timestamp_seconds",
                "awoooi_flywheel_refresh_age_seconds", "awoooi_flywheel_up"}
    (group,) = load("prometheus/flywheel-rules.yml")["groups"]
    for rule in group["rules"]:
        names = set(re.findall(r"awoooi_[a-z0-9_]+", rule["expr"]))
        assert names <= exported, rule["alert"]


@needs_promtool
def test_promtool_accepts_the_rules_file():
    result = subprocess.run(["promtool", "check", "rules", str(CHECKED_IN / "prometheus" / "flywheel-rules.yml")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _rule(alertname: str) -> dict:
    return next(rule for rule in grafana.prometheus_rules()["groups"][0]["rules"] if rule["alert"] == alertname)


def _promtool_case(series: list[dict], eval_time: str, alertname: str, firing: bool,
                   labels: dict | None = None) -> dict:
    rule = _rule(alertname)
    expected = ([{"exp_labels": {**(labels or {}), **rule["labels"]}, "exp_annotations": rule["annotations"]}]
                if firing else [])
    return {"interval": "1m", "input_series": series,
            "alert_rule_test": [{"eval_time": eval_time, "alertname": alertname, "exp_alerts": expected}]}


def _promtool_test(tmp_path, cases: list[dict]) -> None:
    tests = {"rule_files": [str(CHECKED_IN / "prometheus" / "flywheel-rules.yml")], "evaluation_interval": "1m",
             "tests": cases}
    path = tmp_path / "flywheel-rules.test.yml"
    path.write_text(json.dumps(tests))
    result = subprocess.run(["promtool", "test", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_prometheus_rules_fire_as_intended_and_never_on_a_nan_rate(tmp_path):
    rate = "awoooi_flywheel_execution_success_rate"
    _promtool_test(tmp_path, [
        _promtool_case([{"series": rate, "values": "NaN+0x300"}], "4h", "FlywheelSuccessRateLow", False),
        _promtool_case([{"series": rate, "values": "0.05+0x300"}], "1h59m", "FlywheelSuccessRateLow", False),
        _promtool_case([{"series": rate, "values": "0.05+0x300"}], "2h1m", "FlywheelSuccessRateLow", True),
        _promtool_case([{"series": "awoooi_flywheel_km_unvectorized_count", "values": "3+0x100"}], "61m",
                       "FlywheelKnowledgeUnvectorized", True),
        # The last refresh at Unix time 0, and the evaluation 14 then 16 minutes later.
        _promtool_case([{"series": "awoooi_flywheel_last_refresh_timestamp_seconds", "values": "0+0x30"}],
                       "14m", "FlywheelDataStale", False),
        _promtool_case([{"series": "awoooi_flywheel_last_refresh_timestamp_seconds", "values": "0+0x30"}],
                       "16m", "FlywheelDataStale", True),
    ])


@needs_promtool
def test_a_three_minute_database_blip_keeps_the_for_timer_of_a_metric_rule(tmp_path):
    # Low from 0 on; at 60m the server serves up 0 for three scrapes (the gauges go stale), then recovers.
    series = [{"series": "awoooi_flywheel_execution_success_rate", "values": "0.05x60 stale _x2 0.05x100"}]
    _promtool_test(tmp_path, [_promtool_case(series, "2h1m", "FlywheelSuccessRateLow", True)])


@needs_promtool
def test_database_down_fires_and_survives_the_target_going_down_after_it(tmp_path):
    target = {"job": grafana.PROMETHEUS_JOB, "instance": "flywheel:9188"}
    labels = ",".join(f'{key}="{value}"' for key, value in target.items())
    series = [{"series": f"awoooi_flywheel_up{{{labels}}}", "values": "1x5 0x5 stale"},
              {"series": f"up{{{labels}}}", "values": "1x10 0x30"}]
    _promtool_test(tmp_path, [
        _promtool_case(series, "9m", "FlywheelDatabaseDown", False),
        _promtool_case(series, "17m", "FlywheelDatabaseDown", True, target),
        _promtool_case(series, "17m", "FlywheelStatsServerDown", True, target),
    ])


@needs_promtool
def test_stats_server_missing_from_prometheus_fires_too(tmp_path):
    _promtool_test(tmp_path, [
        _promtool_case([], "4m", "FlywheelStatsServerDown", False),
        _promtool_case([], "6m", "FlywheelStatsServerDown", True, {"job": grafana.PROMETHEUS_JOB}),
    ])


@needs_promtool
def test_stale_data_fires_with_timestamped_samples_long_after_they_stopped(tmp_path):
    # --with-timestamps: refreshes every minute until 10m, then none; the samples stop with them, while
    # the age gauge (never stamped) keeps growing.
    series = [{"series": "awoooi_flywheel_last_refresh_timestamp_seconds", "values": "0+60x10"},
              {"series": "awoooi_flywheel_refresh_age_seconds", "values": "0x10 60+60x60"}]
    _promtool_test(tmp_path, [
        _promtool_case(series, "24m", "FlywheelDataStale", False),
        _promtool_case(series, "26m", "FlywheelDataStale", True),
        _promtool_case(series, "60m", "FlywheelDataStale", True),
    ])
