"""pg_cron, exactly as docs/refresh.md says: the test reads the recipe's blocks from the page and runs
them as written on a PostgreSQL 15 of its own with pg_cron preloaded, the job role logging in with
its password. Runs must succeed in cron.job_run_details and in flywheel.refresh_log, and a failing
refresh must show as failed in both.

pg_cron's schedules have a one-minute grain (1.4), so each test waits for the next run, up to a
deadline: about a minute each.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from flywheel_sync.database import db, migrate
from flywheel_sync.local import generate, pgcluster
from tests.platform import add_incident

pytestmark = pytest.mark.slow
REFRESH_DOC = Path(__file__).resolve().parents[1] / "docs" / "refresh.md"
RECIPE_BLOCK = re.compile(r"<!-- pg_cron recipe: (.+?) -->\n```\w*\n(.*?)```", re.S)
DOCUMENTED_PASSWORD = "'change-me'"
PLATFORM_DATABASE = "platform"
CRON_DATABASE = "postgres"
JOB_ROLE = "flywheel_cron"
# A run starts at the next minute; on a loaded machine the job may start some seconds late.
RUN_DEADLINE_SECONDS = 150


def recipe() -> dict[str, str]:
    """The recipe's blocks from docs/refresh.md, by the label of the comment above each."""
    return dict(RECIPE_BLOCK.findall(REFRESH_DOC.read_text()))


def test_the_refresh_page_has_the_recipe_blocks_this_test_runs():
    assert list(recipe()) == [
        "postgresql.conf",
        "job role, as a superuser in the platform database",
        "extension, as a superuser in the cron database",
        "schedule, as flywheel_cron in the cron database",
        "runs, as flywheel_cron in the cron database",
        "refreshes, as flywheel_cron in the platform database",
    ]


class CronCluster:
    """A cluster configured by the recipe's postgresql.conf, with a platform database migrated and the
    recipe's SQL run in it, as the page says, by the roles it names."""

    def __init__(self, folder: Path) -> None:
        blocks = recipe()
        settings = dict(line.split(" = ", 1) for line in blocks["postgresql.conf"].splitlines() if line.strip())
        self.cluster = pgcluster.Cluster.create(folder, settings)
        self.cluster.start()
        self.job_password = uuid.uuid4().hex
        with psycopg.connect(self.cluster.url(), autocommit=True) as admin:
            admin.execute(f"create database {PLATFORM_DATABASE}")
        engine = db.create_engine(self.platform_url(), poolclass=sa.pool.NullPool)
        with engine.begin() as connection:
            generate.create_reference_schema(connection)
            add_incident(connection, status="investigating")
        migrate.upgrade(engine)
        engine.dispose()
        role_block = blocks["job role, as a superuser in the platform database"]
        self.superuser(PLATFORM_DATABASE, role_block.replace(DOCUMENTED_PASSWORD, f"'{self.job_password}'"))
        self.superuser(CRON_DATABASE, blocks["extension, as a superuser in the cron database"])
        with self.as_job_role(CRON_DATABASE) as connection:
            connection.execute(blocks["schedule, as flywheel_cron in the cron database"])

    def platform_url(self) -> str:
        return self.cluster.url(database=PLATFORM_DATABASE)

    def superuser(self, database: str, sql: str) -> None:
        with psycopg.connect(self.cluster.url(database=database), autocommit=True) as connection:
            connection.execute(sql)

    def as_job_role(self, database: str) -> psycopg.Connection:
        return psycopg.connect(self.cluster.url(JOB_ROLE, self.job_password, database), autocommit=True)

    def now(self) -> object:
        with psycopg.connect(self.cluster.url(), autocommit=True) as connection:
            return connection.execute("select now()").fetchone()[0]

    def next_run(self, after) -> tuple:
        """The first finished run of the job that started after ``after``, from the recipe's query."""
        query = recipe()["runs, as flywheel_cron in the cron database"]
        deadline = time.monotonic() + RUN_DEADLINE_SECONDS
        with self.as_job_role(CRON_DATABASE) as connection:
            while time.monotonic() < deadline:
                finished = [row for row in connection.execute(query).fetchall()
                            if row[2] > after and row[0] in ("succeeded", "failed")]
                if finished:
                    return finished[-1]
                time.sleep(0.5)
        raise AssertionError(f"no run of the job finished within {RUN_DEADLINE_SECONDS} s; "
                             f"log: {self.cluster.log.read_text()[-1500:]}")

    def last_refresh(self) -> tuple:
        """The newest refresh_log row, from the recipe's query."""
        with self.as_job_role(PLATFORM_DATABASE) as connection:
            return connection.execute(recipe()["refreshes, as flywheel_cron in the platform database"]).fetchone()


@pytest.fixture(scope="module")
def cron():
    reason = pgcluster.missing(extension="pg_cron")
    if reason:
        pytest.skip(f"needs PostgreSQL 15 with pg_cron (apt-get install postgresql-15-cron): {reason}")
    folder = Path(tempfile.mkdtemp(prefix="flywheel-pg-cron-"))
    started = None
    try:
        started = CronCluster(folder / "cluster")
        yield started
    finally:
        if started is not None:
            started.cluster.remove()
        shutil.rmtree(folder, ignore_errors=True)


def test_scheduled_refresh_succeeds_in_job_run_details_and_refresh_log(cron):
    status, message, _, _ = cron.next_run(after=cron.now())
    assert (status, message) == ("succeeded", "CALL")
    refresh_id, mode, refresh_status, took, error = cron.last_refresh()
    assert (refresh_status, error) == ("ok", None)


def test_failed_refresh_is_failed_in_job_run_details_and_refresh_log(cron):
    cron.superuser(PLATFORM_DATABASE, "alter table public.incidents rename to incidents_elsewhere")
    try:
        status, message, _, _ = cron.next_run(after=cron.now())
        refresh_id, mode, refresh_status, took, error = cron.last_refresh()
    finally:
        cron.superuser(PLATFORM_DATABASE, "alter table public.incidents_elsewhere rename to incidents")
    assert status == "failed" and "flywheel refresh failed" in message
    assert refresh_status == "failed" and "incidents" in error
