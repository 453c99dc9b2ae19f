"""The follow mode against real servers: events applied, faults survived, one worker per database."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import redis
import sqlalchemy as sa

from flywheel_sync.database import db
from flywheel_sync.mirror import worker
from flywheel_sync.mirror import sync_pass as syncing
from flywheel_sync.mirror.validation import validate, wrong_type
from tests.platform import eventually, mirror_of, playbook_value, sync_log

pytestmark = pytest.mark.usefixtures("keyspace_events_restored")


@pytest.fixture
def engine(worker_engine):
    """The sync runs as the worker's login, granted only what docs/sync.md says (tests/conftest.py)."""
    return worker_engine


def subscribed(running) -> bool:
    return bool(running.log.events("subscribed")) and bool(running.log.events("reconciled"))


@pytest.mark.parametrize("change, expected", [
    (lambda client, key: client.set(key("PB-2"), playbook_value("approved")), {"PB-1": "draft", "PB-2": "approved"}),
    (lambda client, key: client.set(key("PB-1"), playbook_value("deprecated")), {"PB-1": "deprecated"}),
    (lambda client, key: client.delete(key("PB-1")), {}),
    (lambda client, key: client.rename(key("PB-1"), key("PB-3")), {"PB-3": "draft"}),
    (lambda client, key: client.pexpire(key("PB-1"), 1), {}),
], ids=["set", "overwrite", "delete", "rename", "expire"])
def test_the_worker_applies_each_kind_of_change_within_two_seconds(
        engine, redis_client, redis_server_url, playbook_pattern, playbook_key, start_worker, change, expected):
    redis_client.set(playbook_key("PB-1"), playbook_value("draft"))
    running = start_worker(engine, redis_server_url, playbook_pattern)
    assert eventually(lambda: subscribed(running))
    change(redis_client, playbook_key)
    statuses = lambda: {row.playbook_id: row.status for row in mirror_of(engine).values()}  # noqa: E731
    assert eventually(lambda: statuses() == expected, seconds=2.0), statuses()


def test_the_worker_follows_a_database_number_other_than_zero(engine, redis_server_url, playbook_pattern, playbook_key,
                                                            start_worker):
    other_database = redis_server_url.rsplit("/", 1)[0] + "/5"
    client = redis.Redis.from_url(other_database)
    running = start_worker(engine, other_database, playbook_pattern)
    assert eventually(lambda: subscribed(running))
    try:
        client.set(playbook_key("PB-1"), playbook_value())
        assert eventually(lambda: playbook_key("PB-1") in mirror_of(engine), seconds=2)
    finally:
        client.delete(playbook_key("PB-1"))
        client.close()


def test_the_worker_reconciles_on_its_interval_what_no_event_told_it(
        engine, redis_client, redis_server_url, playbook_pattern, playbook_key, start_worker):
    running = start_worker(engine, redis_server_url, playbook_pattern, reconcile_every=0.5)
    assert eventually(lambda: subscribed(running))
    redis_client.config_set("notify-keyspace-events", "")
    redis_client.set(playbook_key("PB-1"), playbook_value())
    assert eventually(lambda: playbook_key("PB-1") in mirror_of(engine), seconds=5)


def test_a_second_worker_waits_for_the_lock_and_says_who_holds_it(
        engine, redis_server_url, playbook_pattern, start_worker):
    first = start_worker(engine, redis_server_url, playbook_pattern)
    assert eventually(lambda: first.log.events("lock_acquired"))
    second = start_worker(engine, redis_server_url, playbook_pattern)
    assert eventually(lambda: second.log.events("lock_busy"))
    assert "flywheel-sync worker" in second.log.events("lock_busy")[0]["holder"]
    first.stop()
    assert eventually(lambda: second.log.events("lock_acquired"), seconds=5)


def test_a_second_worker_told_not_to_wait_exits_with_the_reason(
        engine, redis_server_url, playbook_pattern, start_worker):
    first = start_worker(engine, redis_server_url, playbook_pattern)
    assert eventually(lambda: first.log.events("lock_acquired"))
    second = start_worker(engine, redis_server_url, playbook_pattern, wait_for_lock=False)
    second.thread.join(10)
    assert isinstance(second.failure, worker.SyncBusy)
    assert "another sync worker holds the lock" in second.failure.message


def test_a_one_pass_sync_refuses_to_run_beside_a_worker(engine, redis_server_url, playbook_pattern, start_worker):
    running = start_worker(engine, redis_server_url, playbook_pattern)
    assert eventually(lambda: running.log.events("lock_acquired"))
    with pytest.raises(worker.SyncBusy):
        with worker.exclusive(engine):
            pass


@pytest.mark.slow
def test_the_worker_resumes_by_itself_when_postgresql_comes_back(restartable_postgres, redis_client,
                                                                 redis_server_url, playbook_pattern, playbook_key,
                                                                 start_worker):
    engine = db.create_engine(restartable_postgres.url)
    try:
        running = start_worker(engine, redis_server_url, playbook_pattern)
        assert eventually(lambda: subscribed(running))
        restartable_postgres.stop()
        redis_client.set(playbook_key("PB-1"), playbook_value())
        assert eventually(lambda: running.log.events("database_unavailable"))
        time.sleep(1)
        restartable_postgres.start()
        assert eventually(lambda: playbook_key("PB-1") in mirror_of(engine), seconds=15)
        assert len(running.log.events("lock_acquired")) == 2
    finally:
        running.stop()
        engine.dispose()


@pytest.mark.slow
def test_the_worker_resumes_by_itself_when_redis_comes_back(engine, restartable_redis, start_worker):
    client = redis.Redis.from_url(restartable_redis.url)
    running = start_worker(engine, restartable_redis.url, syncing.DEFAULT_PATTERN)
    assert eventually(lambda: subscribed(running))
    restartable_redis.stop()
    assert eventually(lambda: running.log.events("redis_unavailable"))
    restartable_redis.start()
    client.set(b"playbook:PB-1", playbook_value())
    assert eventually(lambda: b"playbook:PB-1" in mirror_of(engine), seconds=15)
    retries = running.log.events("redis_unavailable")
    assert all(line["retry_in_seconds"] <= 1.0 for line in retries)
    client.close()


def test_without_config_permission_the_worker_says_how_and_still_reconciles(engine, own_redis, start_worker):
    admin = redis.Redis.from_url(own_redis.url)
    admin.execute_command("ACL", "SETUSER", "playbooks", "on", ">secret", "~*", "&*", "+@all", "-config")
    admin.set(b"playbook:PB-1", playbook_value())
    limited_url = own_redis.url.replace("redis://", "redis://playbooks:secret@")
    running = start_worker(engine, limited_url, syncing.DEFAULT_PATTERN, reconcile_every=0.5)
    assert eventually(lambda: running.log.events("notifications_unavailable"))
    assert "CONFIG SET notify-keyspace-events Kg$xe" in running.log.events("notifications_unavailable")[0]["fix"]
    assert "secret" not in json.dumps(running.log.lines)
    admin.set(b"playbook:PB-2", playbook_value())
    assert eventually(lambda: b"playbook:PB-2" in mirror_of(engine), seconds=5)
    admin.close()


def worker_process(database_url: str, redis_url: str, until_event: str) -> subprocess.Popen:
    """`flywheel-sync sync --follow` as a process of its own, once it has logged ``until_event``."""
    command = [sys.executable, "-m", "flywheel_sync", "sync", "--follow", "--log-format", "json"]
    environment = {**os.environ, "FLYWHEEL_DATABASE_URL": database_url, "FLYWHEEL_REDIS_URL": redis_url}
    process = subprocess.Popen(command, env=environment, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
        if json.loads(line)["event"] == until_event:
            break
    return process


@pytest.mark.slow
def test_sigterm_during_a_pass_exits_zero_and_keeps_only_whole_batches(database_url, worker_url, own_redis, tmp_path):
    client = redis.Redis.from_url(own_redis.url)
    syncing.load_sample_playbooks(client, "playbook:", 30 * syncing.SCAN_COUNT)
    process = worker_process(worker_url, own_redis.url, "subscribed")
    time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    rest = [json.loads(line) for line in process.stderr]
    assert process.wait(20) == 0
    assert [line["event"] for line in rest[-2:]] == ["stopping", "stopped"]
    assert rest[-2]["signal"] == "SIGTERM"
    assert not [line for line in rest if line["event"].endswith("_unavailable")]
    engine = db.create_engine(database_url)
    with engine.connect() as connection:
        logged = sync_log(connection)[-1]
        rows = connection.execute(sa.text("select count(*) from flywheel.playbooks")).scalar_one()
    engine.dispose()
    assert (logged.complete, logged.error) == (False, "stopped by signal")
    assert rows == logged.inserted and rows % syncing.SCAN_COUNT == 0
    assert 0 < rows < 30 * syncing.SCAN_COUNT
    client.close()


@pytest.mark.slow
def test_after_sigterm_the_worker_exits_within_a_second_of_saying_stopped(worker_url, own_redis):
    process = worker_process(worker_url, own_redis.url, "reconciled")
    process.send_signal(signal.SIGTERM)
    for line in process.stderr:
        if json.loads(line)["event"] == "stopped":
            break
    stopped = time.monotonic()
    assert process.wait(20) == 0
    # Issue 10 saw 2-4 s here on a loaded host (the interpreter's teardown); the worker now skips it.
    assert time.monotonic() - stopped < 1.0


def test_backoff_doubles_up_to_its_cap_with_jitter():
    backoff = worker.Backoff(base=0.5, cap=4.0)
    delays = [backoff.next_delay() for _ in range(6)]
    for delay, ceiling in zip(delays, [0.5, 1, 2, 4, 4, 4]):
        assert ceiling / 2 <= delay <= ceiling
    backoff.reset()
    assert backoff.next_delay() <= 0.5


def test_a_text_log_line_is_the_event_then_key_value_pairs():
    stream = io.StringIO()
    worker.Log(stream=stream)("applied", keys=3, error="two words", missing=None)
    assert stream.getvalue().split(" ", 1)[1] == 'applied keys=3 error="two words" missing=-\n'


HOSTILE_VALUES = [
    b"not json", b"[1, 2]", b'"a string"', b'{"status": 7}', b'{"status": "approved", "success_count": -3}',
    b'{"status": "approved", "success_count": 2.5}', b'{"status": "approved", "failure_count": 99999999999999999999}',
    b'{"status": "approved", "success_count": "12"}', b'{"status": "approved", "success_count": NaN}',
    b'{"status": "approved", "x": Infinity}', b"[" * 5000 + b"]" * 5000, b'{"status": "\\u0000"}',
    b'{"status": "approved", "name": "\\ud800"}', b"\xff\xfe", b'{"status": "approved", "blob": "' + b"x" * 2_000_000 + b'"}',
]


def test_hostile_records_and_faults_injected_while_the_worker_runs_end_with_the_table_equal_to_redis(
        engine, redis_client, redis_server_url, playbook_pattern, playbook_key, start_worker):
    redis_client.mset({playbook_key(f"PB-{number}"): playbook_value("approved", number, 1) for number in range(200)})
    running = start_worker(engine, redis_server_url, playbook_pattern, reconcile_every=1.0)
    assert eventually(lambda: subscribed(running))
    for number, value in enumerate(HOSTILE_VALUES):
        redis_client.set(playbook_key(f"PB-{number}"), value)
    redis_client.delete(*[playbook_key(f"PB-{number}") for number in range(20, 40)])
    for number in range(40, 50):
        redis_client.rename(playbook_key(f"PB-{number}"), playbook_key(f"PB-renamed-{number}"))
    redis_client.delete(playbook_key("PB-60"))
    redis_client.hset(playbook_key("PB-60"), "status", "approved")
    redis_client.delete(playbook_key("PB-61"))
    redis_client.lpush(playbook_key("PB-61"), "x")
    redis_client.set(playbook_key("PB-62"), playbook_value(), px=20)
    redis_client.set(playbook_key("PB-\xff odd bytes \x00"), playbook_value("draft"))

    def redis_now() -> dict:
        expected = {}
        for found in redis_client.scan_iter(match=playbook_pattern, count=1000):
            kind = redis_client.type(found).decode()
            record = validate(redis_client.get(found)) if kind == "string" else wrong_type(kind)
            expected[found] = record.invalid_reason
        return expected

    def table_now() -> dict:
        return {redis_key: row.invalid_reason for redis_key, row in mirror_of(engine).items()}

    assert eventually(lambda: table_now() == redis_now(), seconds=10), set(table_now().items()) ^ set(redis_now().items())
    assert sum(reason is not None for reason in table_now().values()) == len(HOSTILE_VALUES) + 2
