"""One way to get real servers for every test: PostgreSQL and Redis, embedded by default.

FLYWHEEL_TEST_DATABASE_URL points the tests at a PostgreSQL server instead (a URL whose user may
create databases and roles; no superuser needed); FLYWHEEL_TEST_REDIS_URL at a Redis server, and
FLYWHEEL_TEST_REDIS_DEFAULT_USER_URL, when set, at the same server as its requirepass user.
The embedded servers are set up as production has them: PostgreSQL checks passwords over TCP
(scram-sha-256) and Redis wants an ACL user's password, with characters a URL must encode, so no
test can pass by trust alone (.ci/production-servers does the same with Debian's PostgreSQL 15). Either way the tests only touch what
they create: databases named flywheel_test_*, dropped at the end, and Redis keys under a random
prefix of each test, deleted afterwards. Nothing is ever flushed.

Each test that needs a migrated database gets its own, cloned from a template migrated once per
session (CREATE DATABASE ... TEMPLATE), so tests can commit, run concurrently and break things.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import pytest
import redis
import sqlalchemy as sa

from flywheel_sync.database import db, migrate
from flywheel_sync.local import embedded, generate
from flywheel_sync.mirror import worker
from tests.serving import FreezableRelay

TEST_DATABASE_ENV = "FLYWHEEL_TEST_DATABASE_URL"
TEST_REDIS_ENV = "FLYWHEEL_TEST_REDIS_URL"
TEST_REDIS_DEFAULT_USER_ENV = "FLYWHEEL_TEST_REDIS_DEFAULT_USER_URL"


@pytest.fixture(scope="session")
def postgres_server_url(tmp_path_factory) -> Iterator[str]:
    """A URL of a PostgreSQL server on which the tests may create databases."""
    external = os.environ.get(TEST_DATABASE_ENV)
    if external:
        yield external
        return
    folder = tmp_path_factory.mktemp("postgres")
    server = embedded.start_postgres(folder)
    yield _require_passwords(server.url)
    embedded.stop(folder)


def awkward_password() -> str:
    """A password holding every character a URL must encode, and a random part."""
    return f"p@ss/w:rd%?#&= {secrets.token_hex(4)}"


def _require_passwords(url: str) -> str:
    """Make the embedded server ask for the superuser's password over TCP (scram-sha-256); its URL."""
    password = awkward_password()
    admin = db.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as connection:
        connection.execute(sa.text("select set_config('password_encryption', 'scram-sha-256', false)"))
        connection.execute(sa.text(connection.execute(
            sa.text("select format('alter role postgres password %L', cast(:password as text))"),
            {"password": password}).scalar_one()))
        hba_file = connection.execute(sa.text("show hba_file")).scalar_one()
        with open(hba_file, "w") as hba:  # the Unix socket stays trusted: pg_ctl and the tests' restarts use it
            hba.write("local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n")
        connection.execute(sa.text("select pg_reload_conf()"))
    admin.dispose()
    with_password = db.parse_url(url).set(password=password).render_as_string(hide_password=False)
    refused = db.create_engine(url, poolclass=sa.pool.NullPool)
    _wait_until(lambda: not _connects(refused))  # the reload has taken effect: trust is gone
    refused.dispose()
    return with_password


def _connects(engine: sa.Engine) -> bool:
    try:
        with engine.connect():
            return True
    except sa.exc.OperationalError:
        return False


FLYWHEEL_ROLES = ("flywheel_reader", "flywheel_refresher", "flywheel_owner")


class Databases:
    """Creates databases named flywheel_test_* on the test server, and drops exactly those.

    The migrations create the cluster-wide roles flywheel_reader, flywheel_refresher and flywheel_owner
    when absent; the ones that were absent before the session are dropped after it, where nothing
    else uses them.
    """

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.admin = db.create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        self.created: list[str] = []
        self.granted: list[str] = []
        with self.admin.connect() as connection:
            self.roles_before = set(connection.execute(
                sa.text("select rolname from pg_roles where rolname = any(:names)"), {"names": list(FLYWHEEL_ROLES)}
            ).scalars())

    def url(self, name: str) -> str:
        return db.parse_url(self.server_url).set(database=name).render_as_string(hide_password=False)

    def create(self, template: str | None = None) -> str:
        name = f"flywheel_test_{uuid.uuid4().hex[:12]}"
        with self.admin.connect() as connection:
            suffix = f" template {template}" if template else ""
            connection.execute(sa.text(f"create database {name}{suffix}"))
        self.created.append(name)
        return name

    def may_set_flywheel_roles(self) -> None:
        """Make the test login a member of the flywheel roles, so that tests may SET ROLE to them.

        A superuser may anyway; a login with CREATEROLE (production conditions) gets the membership
        for the session, taken back at its end.
        """
        with self.admin.connect() as connection:
            for role in FLYWHEEL_ROLES:
                if not connection.execute(sa.text("select pg_has_role(current_user, :role, 'member')"),
                                          {"role": role}).scalar_one():
                    connection.execute(sa.text(f"grant {role} to current_user"))
                    self.granted.append(role)

    def drop_all(self) -> None:
        with self.admin.connect() as connection:
            for role in self.granted:
                connection.execute(sa.text(f"revoke {role} from current_user"))
            for name in reversed(self.created):
                connection.execute(sa.text(f"drop database if exists {name} with (force)"))
            for role in set(FLYWHEEL_ROLES) - self.roles_before:
                try:
                    connection.execute(sa.text(f"drop role if exists {role}"))
                except sa.exc.DBAPIError:
                    pass  # another database of the server still uses it: it is not only ours
        self.admin.dispose()


@pytest.fixture(scope="session")
def databases(postgres_server_url) -> Iterator[Databases]:
    factory = Databases(postgres_server_url)
    yield factory
    factory.drop_all()


def _migrated(databases: Databases, layout: str) -> str:
    name = databases.create()
    engine = db.create_engine(databases.url(name), poolclass=sa.pool.NullPool)
    with engine.begin() as connection:
        generate.create_reference_schema(connection, layout=layout)
    migrate.upgrade(engine)
    engine.dispose()
    databases.may_set_flywheel_roles()
    return name


@pytest.fixture(scope="session")
def migrated_template(databases) -> str:
    """A database with the reference platform tables (empty) and schema flywheel at head."""
    return _migrated(databases, "plain")


@pytest.fixture(scope="session")
def partitioned_template(databases) -> str:
    """migrated_template with the platform tables range-partitioned by month, as pg_partman keeps them."""
    return _migrated(databases, "partitioned")


@pytest.fixture
def partitioned_database_url(databases, partitioned_template) -> str:
    """A database of this test's own: empty partitioned platform tables, schema flywheel at head."""
    return databases.url(databases.create(template=partitioned_template))


@pytest.fixture
def database_url(databases, migrated_template) -> str:
    """A database of this test's own: empty platform tables, schema flywheel at head."""
    return databases.url(databases.create(template=migrated_template))


class WorkerLogin:
    """The sync worker's login as docs/sync.md sets it up: LOGIN with a password, granted
    flywheel_refresher and nothing else. Cluster-wide, so one serves the session; dropped after it."""

    def __init__(self, server_url: str) -> None:
        self.name = f"flywheel_test_worker_{uuid.uuid4().hex[:8]}"
        self.password = awkward_password()
        self.admin = db.create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        with self.admin.connect() as connection:
            statement = connection.execute(sa.text(
                "select format('create role %I login password %L in role flywheel_refresher',"
                " cast(:name as text), cast(:password as text))"), {"name": self.name, "password": self.password})
            connection.execute(sa.text(statement.scalar_one()))

    def url(self, database_url: str) -> str:
        return db.parse_url(database_url).set(username=self.name, password=self.password) \
            .render_as_string(hide_password=False)

    def drop(self) -> None:
        with self.admin.connect() as connection:
            connection.execute(sa.text(f"drop role if exists {self.name}"))
        self.admin.dispose()


@pytest.fixture(scope="session")
def worker_login(postgres_server_url, migrated_template) -> Iterator[WorkerLogin]:
    login = WorkerLogin(postgres_server_url)
    yield login
    login.drop()


@pytest.fixture
def worker_url(database_url, worker_login) -> str:
    """This test's database, as the sync worker's login."""
    return worker_login.url(database_url)


@pytest.fixture
def worker_engine(worker_url) -> Iterator[sa.Engine]:
    engine = db.create_engine(worker_url)
    yield engine
    engine.dispose()


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
def owner_engine(database_url) -> Iterator[sa.Engine]:
    """The test database as its owner, where ``engine`` is overridden by a module (the sync tests)."""
    engine = db.create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def connection(engine) -> Iterator[sa.Connection]:
    """A connection in a transaction, committed at the end of the test."""
    with engine.begin() as connection:
        yield connection


@pytest.fixture(scope="session")
def redis_server_urls(tmp_path_factory) -> Iterator[tuple[str, str | None]]:
    """URLs of one Redis server: as an ACL user, and as the default user (requirepass), when known."""
    external = os.environ.get(TEST_REDIS_ENV)
    if external:
        yield external, os.environ.get(TEST_REDIS_DEFAULT_USER_ENV)
        return
    folder = tmp_path_factory.mktemp("redis")
    server = embedded.start_redis(folder)
    yield _require_passwords_of_redis(server.url)
    embedded.stop(folder)


@pytest.fixture(scope="session")
def redis_server_url(redis_server_urls) -> str:
    """A URL of a Redis server (an ACL user's); tests touch only keys under their own prefix."""
    return redis_server_urls[0]


@pytest.fixture(scope="session")
def redis_requirepass_url(redis_server_urls) -> str:
    """The same server as its default user, whose password is requirepass."""
    if redis_server_urls[1] is None:
        pytest.skip(f"{TEST_REDIS_DEFAULT_USER_ENV} is not set")
    return redis_server_urls[1]


def _require_passwords_of_redis(url: str) -> tuple[str, str]:
    """Give the embedded Redis a password (requirepass) and an ACL user; both their URLs."""
    user, password = "flywheel_test", awkward_password().replace(" ", "_")
    default_password = awkward_password().replace(" ", "_")
    client = redis.Redis.from_url(url)
    client.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=["*"], channels=["*"], commands=["+@all"])
    client.config_set("requirepass", default_password)
    client.close()
    return (url.replace("redis://", f"redis://{user}:{quote(password, safe='')}@", 1),
            url.replace("redis://", f"redis://:{quote(default_password, safe='')}@", 1))


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
def playbook_key(redis_prefix):
    """The Redis key of a playbook id under the test's own prefix: playbook_key("PB-1")."""
    return lambda playbook: f"{redis_prefix}playbook:{playbook}".encode()


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
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [embedded.redis_server_binary(), "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", str(self.folder)], stdout=subprocess.DEVNULL)
        client = redis.Redis(host="127.0.0.1", port=self.port)
        _wait_until(client.ping, redis.exceptions.ConnectionError)
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


class ThreePrimaryCluster:
    """A Redis Cluster of three primaries on 127.0.0.1, slots split evenly, from redis_server_binary()."""

    SLOT_RANGES = ((0, 5460), (5461, 10922), (10923, 16383))

    def __init__(self, folder) -> None:
        self.ports = [_free_cluster_port() for _ in self.SLOT_RANGES]
        self.processes = []
        for port in self.ports:
            node_folder = folder / str(port)
            node_folder.mkdir(parents=True)
            self.processes.append(subprocess.Popen(
                [embedded.redis_server_binary(), "--bind", "127.0.0.1", "--port", str(port), "--cluster-enabled", "yes",
                 "--cluster-config-file", "nodes.conf", "--dir", str(node_folder), "--save", "", "--appendonly", "no"],
                stdout=subprocess.DEVNULL))
        try:
            self._form_cluster()
        except BaseException:
            self.stop()
            raise
        self.url = f"redis://127.0.0.1:{self.ports[0]}/0"

    def _form_cluster(self) -> None:
        nodes = [redis.Redis(host="127.0.0.1", port=port) for port in self.ports]
        for node in nodes:
            _wait_until(node.ping, redis.exceptions.ConnectionError)
        for node, (first, last) in zip(nodes, self.SLOT_RANGES):
            node.execute_command("CLUSTER", "ADDSLOTS", *range(first, last + 1))
        for port in self.ports[1:]:
            nodes[0].execute_command("CLUSTER", "MEET", "127.0.0.1", port)
        _wait_until(lambda: all(b"cluster_state:ok" in node.execute_command("CLUSTER", "INFO") for node in nodes)
                    and all(len(node.execute_command("CLUSTER", "NODES").splitlines()) == 3 for node in nodes))
        for node in nodes:
            node.close()

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(10)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _free_cluster_port() -> int:
    """A port whose cluster bus port (port + 10000) is free too, so at most 55535."""
    while True:
        port = random.randint(20000, 45000)
        try:
            with socket.socket() as first, socket.socket() as bus:
                first.bind(("127.0.0.1", port))
                bus.bind(("127.0.0.1", port + 10000))
            return port
        except OSError:
            continue


def _wait_until(check, *ignored: type[BaseException], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if check() is not False:
                return
        except ignored:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{check} did not succeed within {seconds:.0f} s")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory) -> Iterator[ThreePrimaryCluster]:
    cluster = ThreePrimaryCluster(tmp_path_factory.mktemp("redis-cluster"))
    yield cluster
    cluster.stop()


class Lines:
    """A log stream the test can read while the worker writes it."""

    def __init__(self) -> None:
        self.lines: list[dict] = []

    def write(self, text: str) -> None:
        if text.strip():
            self.lines.append(json.loads(text))

    def flush(self) -> None:
        pass

    def events(self, name: str) -> list[dict]:
        return [line for line in self.lines if line["event"] == name]


class RunningWorker:
    def __init__(self, engine, options: worker.FollowOptions) -> None:
        self.log = Lines()
        self.stopping = worker.Stopping()
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(engine, options), daemon=True)
        self.thread.start()

    def _run(self, engine, options) -> None:
        try:
            worker.follow(engine, options, worker.Log(json_lines=True, stream=self.log), self.stopping)
        except BaseException as exc:  # the test asserts on it
            self.failure = exc

    def stop(self) -> None:
        self.stopping.event.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


@pytest.fixture
def start_worker():
    running = []

    def start(engine, redis_url, pattern, **options) -> RunningWorker:
        options = {"reconcile_every": 300.0, "backoff_base": 0.2, "backoff_cap": 1.0, "lock_retry_seconds": 0.2,
                   **options}
        started = RunningWorker(engine, worker.FollowOptions(redis_url=redis_url, pattern=pattern, **options))
        running.append(started)
        return started

    yield start
    for started in running:
        if started.thread.is_alive():
            started.stop()


@pytest.fixture
def tls_redis_url(tmp_path) -> Iterator[str]:
    """A rediss:// URL (password, database 3, a CA of the test's own) of a TLS-only Redis server."""
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl to make a certificate")
    folder = tmp_path / "tls-redis"
    folder.mkdir()
    openssl = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
               "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem")]
    subprocess.run(openssl, check=True, capture_output=True)
    port = _free_port()
    process = subprocess.Popen(
        [embedded.redis_server_binary(), "--bind", "127.0.0.1", "--port", "0", "--tls-port", str(port),
         "--tls-cert-file", str(folder / "cert.pem"), "--tls-key-file", str(folder / "key.pem"),
         "--tls-ca-cert-file", str(folder / "cert.pem"), "--tls-auth-clients", "no", "--requirepass", "secret",
         "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"rediss://:secret@127.0.0.1:{port}/3?ssl_ca_certs={folder / 'cert.pem'}"
    try:
        _wait_until(lambda: redis.Redis.from_url(url).ping(), redis.exceptions.ConnectionError, seconds=10)
    except TimeoutError:
        process.kill()
        pytest.skip(f"{embedded.redis_server_binary()} does not serve TLS: {process.stderr.read()[-300:]!r}")
    yield url
    process.terminate()
    process.wait(10)


@pytest.fixture
def relay(database_url) -> Iterator[FreezableRelay]:
    """The test's database behind a relay the test can hang (tests/serving.py); the URL through it as .url."""
    parsed = db.parse_url(database_url)
    proxy = FreezableRelay(parsed.host, parsed.port)
    proxy.url = parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    yield proxy
    proxy.close()
