"""Every panel and alert rule of the generated dashboard, run as Grafana would run it.

Each query's macros are expanded for a time range (tests/grafana_macros.py) and the SQL runs as a
login role granted only flywheel_reader, against the data set of tests/grafana_seed.py.
"""

from __future__ import annotations

import math
import re
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from flywheel_sync.database import db
from flywheel_sync.outputs import grafana
from tests.grafana_macros import TimeRange, expand, parse_interval
from tests.grafana_seed import REFRESHES, ReaderRole, seed
from tests.platform import AS_OF, DAY, HOUR, MINUTE, TAIPEI_MIDNIGHT, add_executions, refresh, utc



def until_now(span: timedelta) -> TimeRange:
    """From span before the data set's clock to the wall clock as the test runs (never as it was collected):
    the refresh and sync logs are written at now(), which may be minutes after collection on a loaded machine."""
    return TimeRange(AS_OF - span, max(AS_OF, datetime.now(timezone.utc)) + MINUTE)


PANELS = [panel for panel in grafana.dashboard()["panels"] if panel["type"] != "row"]
RULES = grafana.alert_provisioning()["groups"][0]["rules"]

# What a table or stat panel must return, column by column (Grafana shows them in this order).
EXPECTED_COLUMNS = {
    "Approved playbooks": ["approved playbooks"],
    "Auto-repair success rate": ["success rate", "source", "sample"],
    "Unvectorized knowledge entries": ["unvectorized knowledge entries"],
    "Missing alertname rate": ["missing alertname rate"],
    "Stuck incidents": ["stuck incidents"],
    "Targets in force": ["metric", "value", "comparison", "target", "met"],
    "Knowledge vectorized": ["vectorized"],
    "Incidents today": ["incidents today"],
    "Incidents last hour": ["incidents last hour"],
    "Repaired today": ["repaired today"],
    "Knowledge entries today": ["knowledge entries today"],
    "TYPE-4 investigating": ["TYPE-4 investigating"],
    "Flywheel nodes": ["node", "status", "details"],
    "Current flow": ["position", "incident_id", "alertname", "current_node", "status", "created_at"],
    "Top failing approved playbooks": ["playbook_id", "name", "failures", "successes", "success_rate"],
    "Invalid playbook records": ["playbook_id", "invalid_reason", "last_seen_at"],
    "Since last refresh": ["since last refresh"],
    "Last refresh": ["status", "took"],
    "Since last sync": ["since last sync"],
    "Last sync": ["took", "keys"],
    "Invalid records": ["invalid records"],
    "Recent refreshes": ["started_at", "status", "ms", "computed_at", "error"],
}


@pytest.fixture(scope="module")
def reader(postgres_server_url, migrated_template):
    role = ReaderRole(postgres_server_url)
    yield role
    role.drop()


@contextmanager
def _reading(databases, template: str, reader: ReaderRole, build=None):
    """An engine logged in as the reader on a new database that build(connection) filled."""
    url = databases.url(databases.create(template=template))
    if build is not None:
        owner = db.create_engine(url, poolclass=sa.pool.NullPool)
        with owner.begin() as connection:
            build(connection)
        owner.dispose()
    with reader.engine(url) as engine:
        yield engine


@pytest.fixture(scope="module")
def seeded(databases, migrated_template, reader):
    """The reader on the known data set of tests/grafana_seed.py, shared by the tests of this module."""
    with _reading(databases, migrated_template, reader, seed) as engine:
        yield engine


@pytest.fixture
def reader_on(databases, migrated_template, reader):
    """reader_on(build): the reader on a database of this test's own, filled by build(connection)."""
    return lambda build=None: _reading(databases, migrated_template, reader, build)


def _insufficient_sample(connection) -> None:
    add_executions(connection, successes=0, failures=9, created_at=AS_OF - HOUR)
    refresh(connection)


def _panel(title: str) -> dict:
    return next(panel for panel in PANELS if panel["title"] == title)


def _interval(panel: dict, wanted: timedelta) -> timedelta:
    """$__interval as Grafana sets it: never below the panel's minimum interval."""
    return max(wanted, parse_interval(panel["interval"])) if "interval" in panel else wanted


def run(engine: sa.Engine, sql: str, time_range: TimeRange, interval: timedelta) -> tuple[list[str], list[tuple]]:
    with engine.connect() as connection:
        result = connection.execute(sa.text(expand(sql, time_range, interval).replace(":", r"\:")))
        return list(result.keys()), [tuple(row) for row in result]


def run_panel(engine, key: str, time_range: TimeRange | None = None, interval: timedelta = MINUTE):
    panel = _panel(key)
    return run(engine, panel["targets"][0]["rawSql"], time_range or until_now(DAY), _interval(panel, interval))


def one_row(engine, key: str) -> dict:
    columns, rows = run_panel(engine, key)
    assert len(rows) == 1, rows
    return dict(zip(columns, rows[0]))


def _time_value(value) -> float:
    return value.timestamp() if hasattr(value, "timestamp") else float(value)


@pytest.mark.parametrize("key", [panel["title"] for panel in PANELS])
@pytest.mark.parametrize("span, interval", [(DAY, MINUTE), (7 * DAY, 7 * DAY)], ids=["day", "week"])
def test_panel_query_runs_as_reader_and_returns_what_grafana_needs(seeded, key, span, interval):
    panel = _panel(key)
    target = panel["targets"][0]
    columns, rows = run(seeded, target["rawSql"], until_now(span), _interval(panel, interval))
    if target["format"] == "time_series":
        assert panel["type"] == "timeseries"
        assert columns[0] == "time"
        times = [_time_value(row[0]) for row in rows]
        assert rows and times == sorted(set(times))
    else:
        assert columns == EXPECTED_COLUMNS[key]


def test_panel_titles_are_unique():
    titles = [panel["title"] for panel in PANELS]
    assert len(titles) == len(set(titles))


def test_reader_role_cannot_read_the_platform_tables(seeded):
    """So a panel that runs as the reader reads only schema flywheel."""
    with seeded.connect() as connection, pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
        connection.execute(sa.text("select count(*) from public.incidents"))


def test_every_summary_metric_has_a_time_series():
    drawn = " ".join(panel["targets"][0]["rawSql"] for panel in PANELS
                     if panel["type"] == "timeseries" and "flywheel.history(" in panel["targets"][0]["rawSql"])
    for metric in ("playbook_count", "execution_success_rate", "km_unvectorized_count", "km_vectorized_rate",
                   "alertname_null_rate", "incidents_stuck", "type4_count", "today_processed",
                   "flywheel_conversions_today", "count_1h", "execution_success_today"):
        assert re.search(rf"(sum|min|max)\({metric}_(sum|min|max)\)", drawn), metric


def test_target_stats_show_the_known_values(seeded):
    assert one_row(seeded, "Approved playbooks") == {"approved playbooks": 3}
    assert one_row(seeded, "Auto-repair success rate") == {"success rate": 0.25, "source": "24h", "sample": 12}
    assert one_row(seeded, "Unvectorized knowledge entries") == {"unvectorized knowledge entries": 1}
    assert one_row(seeded, "Missing alertname rate")["missing alertname rate"] == pytest.approx(1 / 3)
    assert one_row(seeded, "Stuck incidents") == {"stuck incidents": 1}


def test_target_stat_thresholds_turn_green_exactly_at_the_targets_in_force(seeded):
    with seeded.connect() as connection:
        targets = dict(connection.execute(sa.text("select metric, target from flywheel.summary_targets")).all())
    for target in grafana.TARGETS:
        steps = _panel(target.title)["fieldConfig"]["defaults"]["thresholds"]["steps"]
        met_color = [step["color"] for step in steps if step["value"] is None or step["value"] <= targets[target.column]]
        assert met_color[-1] == "green", target.column
        assert targets[target.column] == target.value


def test_success_rate_stat_is_null_not_zero_when_the_sample_is_insufficient(reader_on):
    with reader_on(_insufficient_sample) as engine:
        row = one_row(engine, "Auto-repair success rate")
    assert row == {"success rate": None, "source": "insufficient", "sample": 9}
    assert _panel("Auto-repair success rate")["fieldConfig"]["defaults"]["noValue"] == "no data"


def test_snapshot_series_has_one_point_per_refresh_in_the_range(seeded):
    columns, rows = run_panel(seeded, "Success rate over time", TimeRange(AS_OF - 150 * MINUTE, AS_OF + MINUTE))
    assert columns == ["time", "success rate"]
    assert [_time_value(row[0]) for row in rows] == [utc(moment).timestamp() for moment in REFRESHES[1:]]
    assert [row[1] for row in rows] == [0.25, 0.25, 0.25]


def test_snapshot_series_takes_the_fewest_playbooks_per_interval(seeded):
    columns, rows = run_panel(seeded, "Approved playbooks over time", TimeRange(AS_OF - DAY, AS_OF), 7 * DAY)
    assert columns == ["time", "approved playbooks", "invalid records"]
    assert [row[1:] for row in rows] == [(3, 1)]


def test_incidents_per_day_puts_each_day_at_its_own_midnight(seeded):
    columns, rows = run_panel(seeded, "Incidents per day", TimeRange(TAIPEI_MIDNIGHT - 3 * DAY, AS_OF))
    assert columns == ["time", "incidents", "missing alertname share"]
    days = [utc(TAIPEI_MIDNIGHT - 2 * DAY), utc(TAIPEI_MIDNIGHT - DAY), utc(TAIPEI_MIDNIGHT)]
    assert [(row[0], row[1], row[2]) for row in rows] == [(days[0], 1, 1.0), (days[1], 3, 0.0), (days[2], 2, 0.5)]


def test_daily_trends_group_days_when_the_interval_is_a_week(seeded):
    _, rows = run_panel(seeded, "Incidents per day", TimeRange(TAIPEI_MIDNIGHT - 3 * DAY, AS_OF), 7 * DAY)
    assert sum(row[1] for row in rows) == 6
    assert rows[0][0] == utc(TAIPEI_MIDNIGHT - 2 * DAY)


def test_repairs_and_knowledge_per_day_show_the_known_days(seeded):
    time_range = TimeRange(TAIPEI_MIDNIGHT - 3 * DAY, AS_OF)
    _, repairs = run_panel(seeded, "Repairs per day", time_range)
    assert [row[1:] for row in repairs] == [(2, 1, 0.5), (12, 3, 0.25)]
    _, knowledge = run_panel(seeded, "Knowledge entries per day", time_range)
    assert [row[1:] for row in knowledge] == [(1, 1), (2, 1)]


def test_nodes_table_lists_the_six_nodes_in_flywheel_order_with_their_status(seeded):
    _, rows = run_panel(seeded, "Flywheel nodes")
    assert [(node, status) for node, status, _ in rows] == [(node, "active") for node in grafana.NODES]
    assert rows[0][2] == {"count_1h": 1}


def test_nodes_table_is_empty_before_the_first_refresh(reader_on):
    with reader_on() as engine:
        assert run_panel(engine, "Flywheel nodes")[1] == []


def test_current_flow_lists_active_incidents_newest_first_with_unknown_alertnames(seeded):
    _, rows = run_panel(seeded, "Current flow")
    assert [(row[2], row[3]) for row in rows] == [("unknown", "execution"), ("HighCPU", "diagnosis"),
                                                  ("unknown", "diagnosis")]


def test_failing_playbooks_lists_approved_ones_with_failures_most_first(seeded):
    _, rows = run_panel(seeded, "Top failing approved playbooks")
    assert [(row[0], row[2], float(row[4])) for row in rows] == [("PB-A", 9, 0.1), ("PB-B", 5, 0.5)]


def test_pipeline_health_shows_recent_refresh_and_sync_and_the_invalid_record(seeded):
    assert 0 <= one_row(seeded, "Since last refresh")["since last refresh"] < 600
    assert one_row(seeded, "Last refresh")["status"] == "ok"
    assert one_row(seeded, "Since last sync")["since last sync"] >= 1
    assert one_row(seeded, "Last sync")["keys"] == 5
    assert one_row(seeded, "Invalid records") == {"invalid records": 1}
    assert [row[0] for row in run_panel(seeded, "Invalid playbook records")[1]] == ["PB-X"]


# Alert rules ---------------------------------------------------------------------------------------

def _rule(uid: str) -> dict:
    return next(rule for rule in RULES if rule["uid"] == uid)


def evaluate(engine: sa.Engine, rule: dict) -> str:
    """The rule's state for one evaluation now: Alerting, Normal, or its noDataState."""
    query, reduce, threshold = (step["model"] for step in rule["data"])
    seconds = rule["data"][0]["relativeTimeRange"]["from"]
    with engine.connect() as connection:
        now = connection.execute(sa.text("select now()")).scalar_one()
    columns, rows = run(engine, query["rawSql"], TimeRange(now - timedelta(seconds=seconds), now),
                        timedelta(milliseconds=query["intervalMs"]))
    assert query["format"] == "time_series" and columns[0] == "time"
    assert reduce["reducer"] == "last" and reduce["settings"]["mode"] == "dropNN"
    values = [float(row[1]) for row in rows if row[1] is not None and not math.isnan(float(row[1]))]
    if not values:
        return rule["noDataState"]
    evaluator = threshold["conditions"][0]["evaluator"]
    limit = evaluator["params"][0]
    firing = values[-1] > limit if evaluator["type"] == "gt" else values[-1] < limit
    return "Alerting" if firing else "Normal"


@pytest.mark.parametrize("uid, state", [
    ("flywheel-success-rate-low", "Normal"),
    ("flywheel-incidents-stuck", "Alerting"),
    ("flywheel-km-unvectorized", "Alerting"),
    ("flywheel-alertname-missing", "Alerting"),
    ("flywheel-playbooks-low", "Alerting"),
    ("flywheel-data-stale", "Normal"),
])
def test_alert_rule_on_the_known_data_set(seeded, uid, state):
    assert evaluate(seeded, _rule(uid)) == state


def test_every_alert_rule_has_a_test_on_the_known_data_set():
    tested = {"flywheel-success-rate-low", "flywheel-incidents-stuck", "flywheel-km-unvectorized",
              "flywheel-alertname-missing", "flywheel-playbooks-low", "flywheel-data-stale"}
    assert {rule["uid"] for rule in RULES} == tested


def test_success_rate_rule_fires_below_a_tenth_after_two_hours(reader_on):
    def ten_failures(connection):
        add_executions(connection, successes=0, failures=10, created_at=AS_OF - HOUR)
        refresh(connection)

    rule = _rule("flywheel-success-rate-low")
    with reader_on(ten_failures) as engine:
        assert evaluate(engine, rule) == "Alerting"
    assert rule["for"] == "2h"


def test_success_rate_rule_never_fires_on_an_insufficient_sample(reader_on):
    with reader_on(_insufficient_sample) as engine:
        assert evaluate(engine, _rule("flywheel-success-rate-low")) == "OK"


def test_stale_rule_fires_when_the_last_refresh_is_older_than_15_minutes(reader_on):
    def refreshed_16_minutes_ago(connection):
        refresh(connection)
        connection.execute(sa.text("update flywheel.refresh_log set finished_at = now() - interval '16 minutes'"))

    with reader_on(refreshed_16_minutes_ago) as engine:
        assert evaluate(engine, _rule("flywheel-data-stale")) == "Alerting"


def test_stale_rule_fires_when_nothing_was_ever_refreshed(reader_on):
    with reader_on() as engine:
        assert evaluate(engine, _rule("flywheel-data-stale")) == "Alerting"
