"""The sync worker keeping the metrics seconds fresh: `sync --follow --refresh-every SECONDS`.

Real servers; every wait is on a condition with a timeout (tests.platform.eventually), never a sleep.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from flywheel_sync.database import db
from flywheel_sync.mirror import worker
from flywheel_sync.mirror import sync_pass as syncing
from flywheel_sync.mirror.refresh_schedule import RefreshSchedule
from flywheel_sync.mirror.worker import Log
from tests.conftest import Lines
from tests.platform import add_incident, eventually, playbook_value

pytestmark = pytest.mark.usefixtures("keyspace_events_restored")


@pytest.fixture
def engine(worker_engine):
    """The worker runs as its own login, granted only flywheel_refresher (tests/conftest.py)."""
    return worker_engine


def summary_value(engine, column: str):
    with engine.connect() as connection:
        return connection.execute(sa.text(f"select {column} from flywheel.summary")).scalar()


def newest_refresh(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.text("select coalesce(max(refresh_id), 0) from flywheel.refresh_log"
                                          " where status = 'ok'")).scalar_one()


def now() -> datetime:
    return datetime.now(timezone.utc)


def test_a_change_to_a_source_table_shows_in_the_summary_after_the_next_refresh(
        engine, owner_engine, redis_server_url, playbook_pattern, start_worker):
    running = start_worker(engine, redis_server_url, playbook_pattern, refresh_every=0.2)
    assert eventually(lambda: summary_value(engine, "incidents_total") == 0)
    with owner_engine.begin() as connection:
        add_incident(connection, created_at=now())
    assert eventually(lambda: summary_value(engine, "incidents_total") == 1, seconds=5)
    assert running.failure is None


def test_a_change_in_redis_is_refreshed_at_once_without_an_interval(
        engine, redis_client, redis_server_url, playbook_pattern, playbook_key, start_worker):
    running = start_worker(engine, redis_server_url, playbook_pattern, refresh_after_change=True)
    assert eventually(lambda: running.log.events("subscribed"))
    redis_client.set(playbook_key("PB-1"), playbook_value("approved"))
    assert eventually(lambda: summary_value(engine, "playbook_count") == 1, seconds=5)
    assert running.log.events("refreshed")[0]["reason"] == "after_change"


def test_bad_redis_records_do_not_stop_the_metrics(
        engine, redis_client, redis_server_url, playbook_pattern, playbook_key, start_worker):
    running = start_worker(engine, redis_server_url, playbook_pattern, refresh_after_change=True)
    assert eventually(lambda: running.log.events("subscribed"))
    redis_client.set(playbook_key("PB-BAD"), b"{not json")
    redis_client.set(playbook_key("PB-NEG"), playbook_value(success_count=-1))
    redis_client.set(playbook_key("PB-1"), playbook_value("approved"))
    assert eventually(lambda: (summary_value(engine, "playbook_count"), summary_value(engine, "playbooks_invalid"))
                      == (1, 2), seconds=5)
    assert not running.log.events("refresh_failed")


def test_a_refresh_that_finds_another_refresher_holding_the_lock_is_skipped_and_the_loop_goes_on(
        engine, owner_engine, redis_server_url, playbook_pattern, start_worker):
    # A refresh of the worker's that starts just before the test takes the lock waits for it: a short
    # wait, so that it gives up within the test's patience.
    with owner_engine.begin() as connection:
        connection.execute(sa.text("update flywheel.settings set value = '\"1 second\"' where key = 'refresh_lock_wait'"))
    running = start_worker(engine, redis_server_url, playbook_pattern, refresh_every=0.2)
    assert eventually(lambda: newest_refresh(engine) > 0)
    with owner_engine.connect() as other_refresher:
        other_refresher.execute(sa.text("set application_name = 'cron refresh'"))
        other_refresher.execute(sa.text("select flywheel.take_refresh_lock()"))
        assert eventually(lambda: running.log.events("refresh_skipped"))
        held_at = newest_refresh(engine)
        other_refresher.rollback()
    assert eventually(lambda: newest_refresh(engine) > held_at)
    skipped = running.log.events("refresh_skipped")
    assert len(skipped) == 1 and "cron refresh" in skipped[0]["holder"]
    assert running.log.events("refresh_resumed")
    assert not running.log.events("refresh_failed") and running.failure is None


def test_the_loop_survives_its_database_connections_being_dropped(
        engine, owner_engine, worker_login, redis_server_url, playbook_pattern, start_worker):
    running = start_worker(engine, redis_server_url, playbook_pattern, refresh_every=0.2)
    assert eventually(lambda: running.log.events("lock_acquired") and newest_refresh(engine) > 0)
    with owner_engine.begin() as connection:
        dropped = connection.execute(sa.text(
            "select count(pg_terminate_backend(pid)) from pg_stat_activity"
            " where usename = :login and datname = current_database()"), {"login": worker_login.name}).scalar_one()
        add_incident(connection, created_at=now())
    assert dropped >= 2  # the lock's connection and the pool's
    assert eventually(lambda: summary_value(engine, "incidents_total") == 1, seconds=10)
    assert eventually(lambda: len(running.log.events("lock_acquired")) == 2, seconds=10)
    lost = running.log.events("database_unavailable")
    assert lost and all("\n" not in line["error"] and worker_login.password not in json.dumps(line) for line in lost)
    assert running.failure is None


def test_the_metrics_stay_fresh_while_redis_is_down(engine, owner_engine, restartable_redis, start_worker):
    running = start_worker(engine, restartable_redis.url, "playbook:PB-*", refresh_every=0.2)
    assert eventually(lambda: running.log.events("subscribed") and newest_refresh(engine) > 0)
    restartable_redis.stop()
    assert eventually(lambda: running.log.events("redis_unavailable"))
    with owner_engine.begin() as connection:
        add_incident(connection, created_at=now())
    assert eventually(lambda: summary_value(engine, "incidents_total") == 1, seconds=5)
    assert running.failure is None


def test_the_refresh_keeps_its_interval_during_a_reconciliation_pass(
        engine, redis_client, redis_server_url, playbook_pattern, redis_prefix):
    syncing.load_sample_playbooks(redis_client, f"{redis_prefix}playbook:", 3 * syncing.SCAN_COUNT)
    ticks = itertools.count(step=10.0)  # every look at the clock is ten seconds later: always due
    lines = Lines()
    log = Log(json_lines=True, stream=lines)
    schedule = RefreshSchedule(every=2.0, after_change=False, log=log, clock=lambda: next(ticks))
    options = worker.FollowOptions(redis_url=redis_server_url, pattern=playbook_pattern)
    client = syncing.connect_redis(redis_server_url)
    try:
        worker._reconcile(engine, client, options, log, worker.Totals(), collect=lambda: None, pending=set(),
                          schedule=schedule)
    finally:
        client.close()
    with engine.connect() as connection:
        during = connection.execute(sa.text(
            "select count(*) from flywheel.refresh_log as r, flywheel.sync_log as s"
            " where r.status = 'ok' and r.started_at between s.started_at and s.finished_at")).scalar_one()
    assert lines.events("reconciled")[0]["scanned"] == 3 * syncing.SCAN_COUNT
    assert during >= 2


def test_the_schedule_backs_off_after_a_failed_refresh_and_resumes_its_interval_after_a_success(
        engine, owner_engine):
    clock = [0.0]
    log = Lines()
    schedule = RefreshSchedule(every=2.0, after_change=False, log=Log(json_lines=True, stream=log),
                               clock=lambda: clock[0])
    with owner_engine.begin() as connection:
        connection.execute(sa.text("update flywheel.settings set value = '\"10 milliseconds\"'"
                                   " where key = 'refresh_lock_timeout'"))
    with owner_engine.connect() as ddl:
        ddl.execute(sa.text("lock table public.incidents in access exclusive mode"))
        assert schedule.run_if_due(engine) is False
        assert schedule.run_if_due(engine) is False  # not due again before its backoff
        assert schedule.seconds_until_due() == 2.0
        clock[0] = 2.0
        assert schedule.run_if_due(engine) is False
        ddl.rollback()
    assert [line["retry_in_seconds"] for line in log.events("refresh_failed")] == [2.0, 4.0]
    clock[0] = 6.0
    assert schedule.run_if_due(engine) is True
    assert log.events("refresh_recovered")[0]["failures_in_a_row"] == 2
    assert schedule.seconds_until_due() == 2.0


def worker_process(database_url: str, redis_url: str, pattern: str, *options: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "flywheel_sync", "sync", "--follow", "--log-format", "json",
               "--pattern", pattern, *options]
    environment = {**os.environ, "FLYWHEEL_DATABASE_URL": database_url, "FLYWHEEL_REDIS_URL": redis_url}
    return subprocess.Popen(command, env=environment, stderr=subprocess.PIPE, text=True)


def read_until(process: subprocess.Popen, event: str) -> list[dict]:
    lines = []
    for text in process.stderr:
        lines.append(json.loads(text))
        if lines[-1]["event"] == event:
            return lines
    raise AssertionError(f"the worker ended without logging {event}: {lines}")


def refresh_waiting_on_a_lock(owner_engine, worker_login) -> bool:
    """True once the worker's refresh is in progress, waiting for the test's lock on incidents."""
    # From pg_locks: a login that is not a superuser and not a member of the worker's role sees
    # neither the query nor the wait event of the worker's backends in pg_stat_activity. Only the
    # refresh reads public.incidents.
    with owner_engine.connect() as connection:
        return connection.execute(sa.text(
            "select exists (select from pg_locks join pg_stat_activity using (pid)"
            " where not granted and relation = 'public.incidents'::regclass and usename = :login)"),
            {"login": worker_login.name}).scalar_one()


@pytest.mark.parametrize("signals, status", [(1, 0), (2, 128 + signal.SIGTERM)], ids=["once", "twice"])
def test_sigterm_during_a_refresh_finishes_it_and_exits_zero_and_a_second_exits_at_once(
        owner_engine, worker_url, worker_login, redis_server_url, playbook_pattern, signals, status):
    with owner_engine.begin() as connection:
        connection.execute(sa.text("update flywheel.settings set value = '\"1 minute\"' where key = 'refresh_lock_timeout'"))
    process = worker_process(worker_url, redis_server_url, playbook_pattern, "--refresh-every", "0.2")
    try:
        read_until(process, "subscribed")
        with owner_engine.connect() as blocker:
            blocker.execute(sa.text("lock table public.incidents in access exclusive mode"))
            assert eventually(lambda: refresh_waiting_on_a_lock(owner_engine, worker_login))
            held_at = newest_refresh(owner_engine)
            process.send_signal(signal.SIGTERM)
            read_until(process, "stop_requested")
            if signals == 2:
                process.send_signal(signal.SIGTERM)
                assert process.wait(20) == status
            blocker.rollback()
        rest = [json.loads(line) for line in process.stderr]
        assert process.wait(20) == status
    finally:
        process.kill()
    events = [line["event"] for line in rest]
    if signals == 1:
        assert events[-2:] == ["stopping", "stopped"]
        assert newest_refresh(owner_engine) > held_at
    else:
        assert events == ["exiting_at_once"]
        assert newest_refresh(owner_engine) == held_at


def test_the_schedule_refreshes_on_one_connection_instead_of_logging_in_each_time(engine):
    clock = [0.0]
    schedule = RefreshSchedule(every=2.0, after_change=False, log=Log(json_lines=True, stream=Lines()),
                               clock=lambda: clock[0])
    backends = []
    try:
        for tick in (0.0, 2.0, 4.0):
            clock[0] = tick
            assert schedule.run_if_due(engine) is True
            backends.append(schedule.connection.info.backend_pid)
    finally:
        schedule.close()
    assert len(set(backends)) == 1 and schedule.connection is None


def test_a_refresher_of_another_database_cloned_from_the_same_template_is_not_taken_for_this_ones(
        engine, databases, migrated_template):
    # The clone has the same OIDs, flywheel.refresh_lock's included; pg_locks lists every database's locks.
    clone = db.create_engine(databases.url(databases.create(template=migrated_template)))
    schedule = RefreshSchedule(every=2.0, after_change=False, log=Log(json_lines=True, stream=Lines()),
                               clock=lambda: 0.0)
    try:
        with clone.connect() as other_refresher:
            other_refresher.execute(sa.text("select flywheel.take_refresh_lock()"))
            assert schedule.run_if_due(engine) is True
            other_refresher.rollback()
    finally:
        schedule.close()
        clone.dispose()
