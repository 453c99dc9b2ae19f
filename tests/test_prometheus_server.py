"""A real Prometheus (Debian's prometheus 2.42) scraping the stats server, with the shipped rules.

Each test starts Prometheus on a free port of 127.0.0.1 with a configuration of its own: one scrape a
second with a one-second timeout, the rules file with its group evaluated every second. The tests poll
Prometheus's HTTP API until what they expect is there, within a bound, never sleeping as a guess.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from flywheel_sync.outputs import grafana
from tests.platform import AS_OF, DAY, HOUR, MINUTE, add_executions, add_incident, add_knowledge_entry, add_playbook, refresh
from tests.serving import serving

pytestmark = pytest.mark.skipif(shutil.which("prometheus") is None,
                                reason="no prometheus binary (Debian's prometheus package; .ci/run unpacks it)")

JOB = grafana.PROMETHEUS_JOB
SCRAPE_TIMEOUT_SECONDS = 1


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Prometheus:
    def __init__(self, folder, target: str) -> None:
        rules = grafana.prometheus_rules()
        for group in rules["groups"]:
            group["interval"] = "1s"
        (folder / "rules.yml").write_text(json.dumps(rules))
        (folder / "prometheus.yml").write_text(json.dumps({
            "global": {"scrape_interval": "1s", "scrape_timeout": f"{SCRAPE_TIMEOUT_SECONDS}s",
                       "evaluation_interval": "1s"},
            "rule_files": [str(folder / "rules.yml")],
            "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [target]}]}],
        }))
        self.url = f"http://127.0.0.1:{_free_port()}"
        self.log = open(folder / "prometheus.log", "w")
        self.process = subprocess.Popen(
            ["prometheus", f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'data'}",
             f"--web.listen-address={self.url.removeprefix('http://')}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT)

    def api(self, path: str, **parameters) -> dict:
        query = f"?{urllib.parse.urlencode(parameters)}" if parameters else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=5) as response:
            return json.load(response)["data"]

    def query(self, expression: str) -> dict[str, float]:
        """The instant vector of expression, by metric name."""
        return {sample["metric"].get("__name__", expression): float(sample["value"][1])
                for sample in self.api("query", query=expression)["result"]}

    def eventually(self, check, seconds: float = 30):
        """check()'s first truthy answer, asking again while it is falsy or Prometheus is not up yet."""
        deadline = time.monotonic() + seconds
        last = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited: {Path(self.log.name).read_text()[-2000:]}")
            try:
                last = check()
            except OSError:
                last = None
            if last:
                return last
            time.sleep(0.1)
        raise AssertionError(f"not within {seconds} s: {check.__doc__ or check}, last answer {last!r}")

    def alert_state(self, name: str) -> str | None:
        states = [alert["state"] for alert in self.api("alerts")["alerts"] if alert["labels"]["alertname"] == name]
        return states[0] if states else None

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        self.log.close()


@pytest.fixture
def platform(engine, connection):
    """A refreshed database whose every metric is non-zero."""
    for _ in range(3):
        add_playbook(connection)
    add_executions(connection, successes=9, failures=3, created_at=AS_OF - HOUR)
    add_playbook(connection, valid=False)
    add_incident(connection, status="investigating", created_at=AS_OF - 2 * DAY, notification_type="TYPE-4")
    add_incident(connection, alertname=None, created_at=AS_OF - 10 * MINUTE, outcome={"execution_success": True})
    add_knowledge_entry(connection, vectorized=False, created_at=AS_OF - HOUR)
    add_knowledge_entry(connection)
    summary = refresh(connection)
    connection.commit()
    return summary


@pytest.fixture
def prometheus(tmp_path):
    started = []

    def start(server_url: str) -> Prometheus:
        started.append(Prometheus(tmp_path, server_url.removeprefix("http://")))
        return started[-1]

    yield start
    for instance in started:
        instance.stop()


def _scraped(prometheus: Prometheus, up: int):
    """The target scraped without error and awoooi_flywheel_up as wanted, as Prometheus stores them."""
    def check():
        values = prometheus.query(f'{{__name__=~"up|awoooi_flywheel_up|scrape_duration_seconds", job="{JOB}"}}')
        return values if values.get("up") == 1 and values.get("awoooi_flywheel_up") == up else None
    check.__doc__ = f"target up and awoooi_flywheel_up {up}"
    return prometheus.eventually(check)


def test_prometheus_stores_every_summary_metric_as_summary_json_says(platform, database_url, prometheus):
    with serving(database_url) as url:
        server = prometheus(url)
        _scraped(server, up=1)
        stored = server.query('{__name__=~"awoooi_flywheel_.+"}')
    numbers = {key: value for key, value in platform.items() if key not in ("computed_at", "execution_success_rate_source")}
    assert all(value for value in numbers.values()), numbers  # every metric non-zero: a swapped pair would show
    for key, value in numbers.items():
        assert stored[f"awoooi_flywheel_{key}"] == pytest.approx(float(value), abs=1e-9), key
    assert stored["awoooi_flywheel_last_refresh_timestamp_seconds"] == pytest.approx(
        datetime.fromisoformat(platform["computed_at"]).timestamp(), abs=1e-3)


def test_prometheus_evaluates_the_shipped_rules_without_error(platform, database_url, prometheus):
    with serving(database_url) as url:
        server = prometheus(url)
        _scraped(server, up=1)
        # AS_OF is long past, so the data is stale; 3 approved playbooks are below the target of 20.
        server.eventually(lambda: server.alert_state("FlywheelDataStale") == "firing")
        server.eventually(lambda: server.alert_state("FlywheelPlaybooksLow") == "firing")
        rules = [rule for group in server.api("rules")["groups"] for rule in group["rules"]]
    assert {rule["name"] for rule in rules} == {rule["alert"] for rule in grafana.prometheus_rules()["groups"][0]["rules"]}
    assert all(rule["health"] == "ok" for rule in rules), [(rule["name"], rule.get("lastError")) for rule in rules]


def test_a_locked_table_is_up_0_within_the_scrape_timeout_and_database_down_pends(platform, engine, database_url,
                                                                                   prometheus):
    with serving(database_url) as url, engine.connect() as holder:
        server = prometheus(url)
        _scraped(server, up=1)
        holder.execute(sa.text("lock table flywheel.snapshots in access exclusive mode"))
        values = _scraped(server, up=0)
        server.eventually(lambda: server.alert_state("FlywheelDatabaseDown") == "pending")
        holder.rollback()
        _scraped(server, up=1)
    assert values["scrape_duration_seconds"] < SCRAPE_TIMEOUT_SECONDS


def test_a_hung_database_is_up_0_within_the_scrape_timeout(platform, relay, prometheus):
    with serving(relay.url) as url:
        server = prometheus(url)
        _scraped(server, up=1)
        relay.freeze()
        values = _scraped(server, up=0)
        relay.thaw()
        _scraped(server, up=1)
    assert values["scrape_duration_seconds"] < SCRAPE_TIMEOUT_SECONDS


def test_a_stopped_server_is_down_for_prometheus_and_its_rule_pends(platform, database_url, prometheus):
    with serving(database_url) as url:
        server = prometheus(url)
        _scraped(server, up=1)
    server.eventually(lambda: server.query(f'up{{job="{JOB}"}}').get("up") == 0)
    server.eventually(lambda: server.alert_state("FlywheelStatsServerDown") == "pending")
