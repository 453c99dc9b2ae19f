"""A read replica: every read path works on a streaming standby as a flywheel_reader login, and the
commands that write refuse it in one line.

The test starts its own primary (the machine's PostgreSQL 15, password authentication,
flywheel_sync.local.pgcluster), fills it with the Grafana data set, and makes a standby of it with
pg_basebackup -R; the reads then run on the standby only.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import urllib.request
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from flywheel_sync.database import db, migrate
from flywheel_sync.local import generate, pgcluster
from flywheel_sync.outputs import stats_server
from tests.cli import error_line, run
from tests.grafana_seed import ReaderRole, seed
from tests.platform import DAY
from tests.test_grafana_queries import EXPECTED_COLUMNS, PANELS, RULES, _interval, evaluate
from tests.test_grafana_queries import run as run_panel_sql
from tests.test_grafana_queries import until_now

pytestmark = pytest.mark.slow
STANDBY_MESSAGE = "Error: read-only standby: run this on the primary"


class Replicated:
    """A primary with the Grafana data set, its streaming standby, and a reader login on both."""

    def __init__(self, folder: Path) -> None:
        self.primary = pgcluster.Cluster.create(folder / "primary")
        self.primary.start()
        self.standby = None
        engine = db.create_engine(self.primary.url(), poolclass=sa.pool.NullPool)
        with engine.begin() as connection:
            generate.create_reference_schema(connection)
        migrate.upgrade(engine)
        with engine.begin() as connection:
            seed(connection)
        engine.dispose()
        self.reader = ReaderRole(self.primary.url())
        self.standby = self.primary.standby(folder / "standby")
        with psycopg.connect(self.primary.url(), autocommit=True) as primary, \
                psycopg.connect(self.standby.url(), autocommit=True) as standby:
            pgcluster.wait_for_replay(primary, standby)

    def stop(self) -> None:
        for cluster in (self.standby, self.primary):
            if cluster is not None:
                cluster.remove()


@pytest.fixture(scope="module")
def replicated():
    reason = pgcluster.missing()
    if reason:
        pytest.skip(f"needs the machine's PostgreSQL 15 server: {reason}")
    folder = Path(tempfile.mkdtemp(prefix="flywheel-standby-"))
    cluster = None
    try:
        cluster = Replicated(folder)
        yield cluster
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def standby_reader(replicated):
    """An engine on the standby, logged in as a role granted only flywheel_reader."""
    with replicated.reader.engine(replicated.standby.url()) as engine:
        yield engine


def test_standby_is_in_recovery(standby_reader):
    with standby_reader.connect() as connection:
        assert connection.execute(sa.text("select pg_is_in_recovery()")).scalar_one()


@pytest.mark.parametrize("query", [
    "select * from flywheel.summary",
    "select * from flywheel.summary_targets",
    "select flywheel.summary_json()",
    "select flywheel.flywheel_json()",
    "select flywheel.prometheus_text()",
    "select * from flywheel.current_flow",
    "select * from flywheel.daily_incidents",
    "select * from flywheel.refresh_log",
])
def test_read_path_answers_on_the_standby_as_a_reader(standby_reader, query):
    with standby_reader.connect() as connection:
        assert connection.execute(sa.text(query)).all()


def test_stats_server_serves_metrics_from_the_standby(standby_reader):
    server = stats_server.make_server(standby_reader.url.render_as_string(hide_password=False), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with urllib.request.urlopen(f"{server.url}/metrics", timeout=30) as response:
            text = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert "\nawoooi_flywheel_up 1\n" in f"\n{text}" and "\nawoooi_flywheel_incidents_stuck 1" in text


@pytest.mark.parametrize("key", [panel["title"] for panel in PANELS])
def test_grafana_panel_runs_on_the_standby_as_a_reader(standby_reader, key):
    panel = next(panel for panel in PANELS if panel["title"] == key)
    target = panel["targets"][0]
    columns, rows = run_panel_sql(standby_reader, target["rawSql"], until_now(7 * DAY), _interval(panel, DAY))
    assert columns[0] == "time" if target["format"] == "time_series" else columns == EXPECTED_COLUMNS[key]


@pytest.mark.parametrize("uid", [rule["uid"] for rule in RULES])
def test_grafana_alert_rule_evaluates_on_the_standby_as_a_reader(standby_reader, uid):
    assert evaluate(standby_reader, next(rule for rule in RULES if rule["uid"] == uid)) in ("Alerting", "Normal")


def test_refresh_function_on_the_standby_says_to_refresh_the_primary(replicated):
    """In SQL too (psql, pg_cron on a promoted-then-demoted server), instead of the failure handler's
    own "cannot execute INSERT in a read-only transaction"."""
    with psycopg.connect(replicated.standby.url(), autocommit=True) as connection:
        for call in ("select flywheel.refresh()", "call flywheel.run_refresh()"):
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction) as raised:
                connection.execute(call)
            assert raised.value.diag.message_primary == "this is a read-only standby: refresh the primary"


def test_refresh_on_the_standby_says_to_run_it_on_the_primary(replicated):
    assert error_line(run("refresh", database_url=replicated.standby.url())) == STANDBY_MESSAGE


def test_migrate_on_the_standby_says_to_run_it_on_the_primary(replicated):
    assert error_line(run("migrate", database_url=replicated.standby.url())) == STANDBY_MESSAGE
