"""The sync with real credentials (issue 10): passwords in URLs, refused logins, other logins, secrets never shown."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from urllib.parse import quote

import psycopg
import redis
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from flywheel_sync.cli import cli
from flywheel_sync.database import db
from flywheel_sync.errors import AuthenticationFailed
from flywheel_sync.mirror import worker
from tests.cli import error_line
from tests.platform import eventually, mirror_of, playbook_value

pytestmark = pytest.mark.usefixtures("keyspace_events_restored")


def sync(database_url: str, redis_url: str, *arguments: str):
    environment = {"FLYWHEEL_DATABASE_URL": database_url, "FLYWHEEL_REDIS_URL": redis_url}
    return CliRunner().invoke(cli, ["sync", *arguments], env=environment)


def with_password(url: str, password: str) -> str:
    scheme, rest = url.split("://", 1)
    user = rest.rsplit("@", 1)[0].split(":", 1)[0] if "@" in rest else ""
    return f"{scheme}://{user}:{quote(password, safe='')}@{rest.rsplit('@', 1)[-1]}"


def without_credentials(url: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{rest.rsplit('@', 1)[-1]}"


@pytest.fixture
def other_login(postgres_server_url, database_url):
    """A login of no flywheel role at all (any login may take any advisory lock); its psycopg connection."""
    name = f"flywheel_test_other_{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    admin = db.create_engine(postgres_server_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as connection:
        connection.execute(sa.text(f"create role {name} login password '{password}'"))
    url = db.parse_url(database_url).set(username=name, password=password)
    connection = psycopg.connect(db.libpq_url(url), autocommit=True, application_name="someone else")
    yield name, connection
    connection.close()
    with admin.connect() as connection:
        connection.execute(sa.text(f"drop role {name}"))
    admin.dispose()


def test_sync_connects_with_the_password_of_its_database_url(worker_url, redis_server_url, playbook_pattern,
                                                            redis_client, playbook_key):
    redis_client.set(playbook_key("PB-1"), playbook_value())
    result = sync(worker_url, redis_server_url, "--pattern", playbook_pattern)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("sync 1 complete: 1 scanned, 1 inserted")


def test_sync_reads_a_redis_with_the_requirepass_password_in_its_url(worker_url, redis_requirepass_url,
                                                                     playbook_pattern, redis_client, playbook_key):
    redis_client.set(playbook_key("PB-1"), playbook_value())
    result = sync(worker_url, redis_requirepass_url, "--pattern", playbook_pattern)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("sync 1 complete: 1 scanned, 1 inserted")


def test_the_worker_holds_its_lock_with_the_password_of_its_database_url(worker_engine, redis_server_url,
                                                                        playbook_pattern, start_worker):
    running = start_worker(worker_engine, redis_server_url, playbook_pattern)
    assert eventually(lambda: running.log.events("reconciled") or running.failure)
    assert running.failure is None and running.log.events("lock_acquired")


def test_a_lock_held_by_another_login_stops_a_one_pass_sync_with_who_holds_it(
        worker_url, redis_server_url, playbook_pattern, other_login):
    name, holder = other_login
    holder.execute("select pg_advisory_lock(%s, %s)", worker.LOCK_KEY)
    result = sync(worker_url, redis_server_url, "--pattern", playbook_pattern)
    line = error_line(result)
    assert result.exit_code == 1
    assert f"login {name}, someone else" in line
    assert f"not a flywheel login: if it should not hold the lock, end it with select pg_terminate_backend(" in line


def test_the_worker_waits_while_another_login_holds_its_lock(worker_engine, redis_server_url, playbook_pattern,
                                                            other_login, start_worker):
    name, holder = other_login
    holder.execute("select pg_advisory_lock(%s, %s)", worker.LOCK_KEY)
    running = start_worker(worker_engine, redis_server_url, playbook_pattern)
    assert eventually(lambda: len(running.log.events("lock_busy")) >= 2 or running.failure)
    assert running.failure is None
    assert f"login {name}" in running.log.events("lock_busy")[0]["holder"]
    holder.execute("select pg_advisory_unlock(%s, %s)", worker.LOCK_KEY)
    assert eventually(lambda: running.log.events("lock_acquired"))


def test_a_wrong_database_password_is_a_refused_login_not_an_unreachable_server(worker_url, redis_server_url):
    result = sync(with_password(worker_url, "wrong"), redis_server_url)
    line = error_line(result)
    assert result.exit_code == AuthenticationFailed.exit_code
    assert "refused the login: password authentication failed for user" in line and "cannot reach" not in line


def test_a_redis_that_wants_a_password_says_to_put_it_in_the_url(worker_url, redis_server_url):
    result = sync(worker_url, without_credentials(redis_server_url))
    assert result.exit_code == AuthenticationFailed.exit_code
    assert "wants a password: put it in the URL, URL-encoded" in error_line(result)


def test_a_wrong_redis_password_is_refused_credentials_not_an_unreachable_server(worker_url, redis_server_url):
    result = sync(worker_url, with_password(redis_server_url, "wrong"))
    line = error_line(result)
    assert result.exit_code == AuthenticationFailed.exit_code
    assert "refused the user and password of the URL" in line and "cannot reach" not in line


@pytest.mark.parametrize("wrong", ["database", "redis"])
def test_the_worker_exits_on_a_refused_password_instead_of_retrying_forever(
        worker_url, redis_server_url, playbook_pattern, start_worker, wrong):
    database_url = with_password(worker_url, "wrong") if wrong == "database" else worker_url
    redis_url = with_password(redis_server_url, "wrong") if wrong == "redis" else redis_server_url
    engine = db.create_engine(database_url)
    try:
        running = start_worker(engine, redis_url, playbook_pattern)
        running.thread.join(30)
    finally:
        engine.dispose()
    assert isinstance(running.failure, AuthenticationFailed)
    assert [line["event"] for line in running.log.lines][-1] == "authentication_failed"
    assert not running.log.events("database_unavailable") and not running.log.events("redis_unavailable")


SECRET = "Sekr1t-p@ss/w:rd"


@pytest.mark.parametrize("given_database_url, given_redis_url", [
    (f"postgresql://flywheel@127.0.0.1:1/platform?password={quote(SECRET, safe='')}", None),
    (f"postgresql://flywheel:{SECRET}@127.0.0.1:1/platform", None),
    (None, f"redis://:{SECRET}@127.0.0.1:1/0"),
    (None, f"redis://playbooks:{quote(SECRET, safe='')}@127.0.0.1:1/0"),
    (None, f"redis://127.0.0.1:1/0?password={quote(SECRET, safe='')}"),
], ids=["pg-query-password", "pg-unencoded", "redis-unencoded", "redis-acl-user", "redis-query-password"])
def test_no_error_shows_a_password_in_any_url_form(worker_url, redis_server_url, given_database_url, given_redis_url):
    result = sync(given_database_url or worker_url, given_redis_url or redis_server_url)
    line = error_line(result)
    assert result.exit_code != 0
    assert not any(part in line for part in ("Sekr1t", quote(SECRET, safe=""), "w:rd")), line


def test_the_worker_log_shows_no_password(worker_engine, worker_login, redis_server_url, playbook_pattern,
                                          start_worker):
    unreachable = f"redis://:{quote(SECRET, safe='')}@127.0.0.1:1/0"
    running = start_worker(worker_engine, unreachable, playbook_pattern)
    assert eventually(lambda: running.log.events("redis_unavailable"))
    running.stop()
    logged = json.dumps(running.log.lines)
    assert running.log.events("started")[0]["database"].count("***") == 1
    for secret in ("Sekr1t", quote(SECRET, safe=""), worker_login.password, quote(worker_login.password, safe="")):
        assert secret not in logged


def test_the_exporter_announces_its_database_without_the_password():
    url = f"postgresql://flywheel@127.0.0.1:1/platform?password={quote(SECRET, safe='')}"
    process = subprocess.Popen([sys.executable, "-m", "flywheel_sync", "exporter", "--port", "0", "--database-url", url],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        announced = process.stdout.readline()
    finally:
        process.terminate()
        process.communicate(timeout=30)
    assert "password=***" in announced and "Sekr1t" not in announced


@pytest.mark.parametrize("given_database_url, given_redis_url, problem", [
    ("postgresql://flywheel:p@ss@127.0.0.1/platform", None, "unencoded '@'"),
    ("postgresql://flywheel:pw@127.0.0.1:five/platform", None, "port is not a number"),
    (None, "redis://:pa/ss@127.0.0.1:6379/0", "unencoded '/'"),
    (None, "redis://:pw@127.0.0.1:six/0", "port is not a number"),
], ids=["pg-at", "pg-port", "redis-slash", "redis-port"])
def test_a_malformed_url_is_refused_in_one_line_before_anything_connects(
        worker_url, redis_server_url, given_database_url, given_redis_url, problem):
    result = sync(given_database_url or worker_url, given_redis_url or redis_server_url)
    assert result.exit_code == 1
    assert problem in error_line(result) and "URL-encode the user name and password" in error_line(result)


def test_the_worker_refuses_a_malformed_redis_url_before_it_starts(worker_url):
    result = sync(worker_url, "redis://:pa/ss@127.0.0.1:1/0", "--follow")
    assert result.exit_code == 1
    assert "the Redis URL cannot be read: its user name or password holds an unencoded '/'" in error_line(result)


def test_the_redis_acl_user_docs_sync_md_suggests_is_enough_for_a_pass_and_the_worker(
        worker_url, worker_engine, own_redis, start_worker):
    admin = redis.Redis.from_url(own_redis.url)
    admin.execute_command("ACL", "SETUSER", "playbooks", "on", ">acl-secret", "~playbook:*", "&*",
                          "+@read", "+@pubsub", "+@connection", "+info")
    admin.set(b"playbook:PB-1", playbook_value())
    limited_url = own_redis.url.replace("redis://", "redis://playbooks:acl-secret@")
    try:
        result = sync(worker_url, limited_url)
        assert result.exit_code == 0, result.output
        running = start_worker(worker_engine, limited_url, "playbook:PB-*", reconcile_every=0.5)
        assert eventually(lambda: running.log.events("notifications_unavailable"))
        admin.set(b"playbook:PB-2", playbook_value())
        assert eventually(lambda: b"playbook:PB-2" in mirror_of(worker_engine), seconds=5)
        assert running.failure is None and not running.log.events("redis_unavailable")
    finally:
        admin.close()
