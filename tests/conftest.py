"""One way to get real servers for every test: PostgreSQL and Redis, embedded by default.

FLYWHEEL_TEST_DATABASE_URL points the tests at a PostgreSQL server instead (a URL whose user may
create databases); FLYWHEEL_TEST_REDIS_URL at a Redis server. Either way the tests only touch what
they create: databases named flywheel_test_*, dropped at the end, and Redis keys under a random
prefix of each test, deleted afterwards. Nothing is ever flushed.

Each test that needs a migrated database gets its own, cloned from a template migrated once per
session (CREATE DATABASE ... TEMPLATE), so tests can commit, run concurrently and break things.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
import sqlalchemy as sa

from flywheel_sync import db, embedded, generate, migrate

TEST_DATABASE_ENV = "FLYWHEEL_TEST_DATABASE_URL"
TEST_REDIS_ENV = "FLYWHEEL_TEST_REDIS_URL"


@pytest.fixture(scope="session")
def postgres_server_url(tmp_path_factory) -> Iterator[str]:
    """A URL of a PostgreSQL server on which the tests may create databases."""
    external = os.environ.get(TEST_DATABASE_ENV)
    if external:
        yield external
        return
    folder = tmp_path_factory.mktemp("postgres")
    server = embedded.start_postgres(folder)
    yield server.url
    embedded.stop(folder)


class Databases:
    """Creates databases named flywheel_test_* on the test server, and drops exactly those."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.admin = db.create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        self.created: list[str] = []

    def url(self, name: str) -> str:
        return db.parse_url(self.server_url).set(database=name).render_as_string(hide_password=False)

    def create(self, template: str | None = None) -> str:
        name = f"flywheel_test_{uuid.uuid4().hex[:12]}"
        with self.admin.connect() as connection:
            suffix = f" template {template}" if template else ""
            connection.execute(sa.text(f"create database {name}{suffix}"))
        self.created.append(name)
        return name

    def drop_all(self) -> None:
        with self.admin.connect() as connection:
            for name in reversed(self.created):
                connection.execute(sa.text(f"drop database if exists {name} with (force)"))
        self.admin.dispose()


@pytest.fixture(scope="session")
def databases(postgres_server_url) -> Iterator[Databases]:
    factory = Databases(postgres_server_url)
    yield factory
    factory.drop_all()


@pytest.fixture(scope="session")
def migrated_template(databases) -> str:
    """A database with the reference platform tables (empty) and schema flywheel at head."""
    name = databases.create()
    engine = db.create_engine(databases.url(name), poolclass=sa.pool.NullPool)
    with engine.begin() as connection:
        generate.create_reference_schema(connection)
    migrate.upgrade(engine)
    engine.dispose()
    return name


@pytest.fixture
def database_url(databases, migrated_template) -> str:
    """A database of this test's own: empty platform tables, schema flywheel at head."""
    return databases.url(databases.create(template=migrated_template))


@pytest.fixture
def empty_database_url(databases) -> str:
    """A database of this test's own with nothing in it."""
    return databases.url(databases.create())


@pytest.fixture
def engine(database_url) -> Iterator[sa.Engine]:
    engine = db.create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def connection(engine) -> Iterator[sa.Connection]:
    """A connection in a transaction, committed at the end of the test."""
    with engine.begin() as connection:
        yield connection


@pytest.fixture(scope="session")
def redis_server_url(tmp_path_factory) -> Iterator[str]:
    """A URL of a Redis server; tests touch only keys under their own prefix."""
    external = os.environ.get(TEST_REDIS_ENV)
    if external:
        yield external
        return
    folder = tmp_path_factory.mktemp("redis")
    server = embedded.start_redis(folder)
    yield server.url
    embedded.stop(folder)


@pytest.fixture
def redis_prefix(redis_server_url) -> Iterator[str]:
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    prefix = f"fwtest:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(redis_server_url)
    for batch in _batched(client.scan_iter(match=f"{prefix}*", count=1000), 500):
        client.delete(*batch)
    client.close()


@pytest.fixture
def redis_client(redis_server_url) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server_url)
    yield client
    client.close()


def _batched(items, size):
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@pytest.fixture
def own_redis(tmp_path) -> Iterator[embedded.Server]:
    """A Redis server of this test's own, which the test may stop and restart (embedded.start_redis)."""
    folder = tmp_path / "own-redis"
    server = embedded.start_redis(folder)
    yield server
    embedded.stop(folder)


@pytest.fixture
def playbook_pattern(redis_prefix) -> str:
    """The sync pattern of this test's keys: the default one under the test's own prefix."""
    return f"{redis_prefix}playbook:PB-*"


@pytest.fixture
def keyspace_events_restored(redis_client) -> Iterator[None]:
    """The server's notify-keyspace-events as it was: a worker under test may turn flags on."""
    before = redis_client.config_get("notify-keyspace-events")["notify-keyspace-events"]
    yield
    redis_client.config_set("notify-keyspace-events", before)


class RestartablePostgres:
    """A PostgreSQL server of one test's own, migrated, that the test may stop and start on its port."""

    def __init__(self, folder) -> None:
        self.folder = folder
        self.url = embedded.start_postgres(folder).url
        engine = db.create_engine(self.url, poolclass=sa.pool.NullPool)
        with engine.begin() as connection:
            generate.create_reference_schema(connection)
        migrate.upgrade(engine)
        engine.dispose()

    def stop(self) -> None:
        self._pg_ctl("-m", "fast", "stop")

    def start(self) -> None:
        """Start again on the same port (embedded.start_postgres would pick a new one)."""
        port = db.parse_url(self.url).port
        self._pg_ctl("-l", str(self.folder / "postgres.log"), "-w",
                     "-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {self.folder} -c fsync=off", "start")

    def _pg_ctl(self, *arguments: str, check: bool = True) -> None:
        pg_ctl = str(embedded._postgres_binaries() / "pg_ctl")
        run_as = {"user": embedded.POSTGRES_SYSTEM_USER} if os.geteuid() == 0 else {}
        subprocess.run([pg_ctl, "-D", str(self.folder / "data"), *arguments], check=check,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **run_as)


@pytest.fixture
def restartable_postgres(tmp_path) -> Iterator[RestartablePostgres]:
    server = RestartablePostgres((tmp_path / "own-postgres").resolve())
    yield server
    server._pg_ctl("-m", "immediate", "stop", check=False)


class RestartableRedis:
    """A Redis server of one test's own on a fixed port, which the test may stop and start."""

    def __init__(self, folder) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [embedded.redis_server_binary(), "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", str(self.folder)], stdout=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture
def restartable_redis(tmp_path) -> Iterator[RestartableRedis]:
    server = RestartableRedis(tmp_path / "own-redis")
    yield server
    if server.process.poll() is None:
        server.stop()
