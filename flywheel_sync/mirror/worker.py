"""The follow mode: `flywheel-sync sync --follow` keeps flywheel.playbooks in step with Redis.

It applies changes within about a second of their happening, from Redis keyspace notifications (set,
delete, rename, expiry: each names a key, which the worker re-reads and writes as it is now), and
still runs a full reconciliation pass on an interval, since notifications are fire-and-forget and
are lost while disconnected. Notifications that arrive during a pass are held and applied after it;
the pass leaves their keys alone when it deletes (see :mod:`flywheel_sync.mirror.sync_pass`).

One worker per database: it holds the session advisory lock ('flyw', 2) on a connection of its own
(the refresh uses ('flyw', 1)). A second worker waits for the lock (or exits, with --no-wait).
Redis or PostgreSQL down: retry with capped exponential backoff and jitter, logged, and resume;
with Redis down the refresh goes on (flywheel_sync.mirror.refresh_schedule decides when it runs).
SIGTERM or SIGINT: stop taking work, let the batch or refresh in hand be written, close, exit 0; a
second signal exits at once (status 128 + the signal's number), rolling back what was in hand.
"""

from __future__ import annotations

import functools
import json
import os
import random
import signal
import sys
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

import psycopg
import redis
import sqlalchemy as sa
from redis.cluster import RedisCluster
from sqlalchemy.engine import Engine

from ..database import db
from ..errors import AuthenticationFailed, DatabaseUnavailable, FlywheelError
from ..urls import mask
from . import sync_pass as syncing
from .refresh_schedule import RefreshSchedule

LOCK_KEY = (0x666C7977, 2)  # 'flyw' and 2: the sync worker's advisory lock (the refresh's is 1)
NOTIFY_FLAGS = "Kg$xe"  # keyspace channel; generic (del, rename, expire), string, expired, evicted
EVENT_WINDOW_SECONDS = 0.2  # events are gathered this long after the first before they are applied
LOCK_CHECK_SECONDS = 5.0
IDLE_WAIT_SECONDS = 0.5


class SyncBusy(FlywheelError):
    """Another sync worker holds the advisory lock of this database."""


@dataclass(frozen=True)
class FollowOptions:
    redis_url: str
    pattern: str = syncing.DEFAULT_PATTERN
    reconcile_every: float = 300.0
    refresh_every: float | None = None
    refresh_after_change: bool = False
    wait_for_lock: bool = True
    allow_mass_delete: bool = False
    lock_retry_seconds: float = 10.0
    backoff_base: float = 0.5
    backoff_cap: float = 60.0


class Log:
    """One structured line per event on stderr: ``ts event key=value ...`` or one JSON object."""

    def __init__(self, json_lines: bool = False, stream=None) -> None:
        self.json_lines = json_lines
        self.stream = stream or sys.stderr

    def __call__(self, event: str, **fields) -> None:
        print(self.line(event, **fields), file=self.stream, flush=True)

    def line(self, event: str, **fields) -> str:
        stamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if self.json_lines:
            return json.dumps({"ts": stamp, "event": event, **fields}, default=str)
        return " ".join([stamp, event] + [f"{key}={_text_value(value)}" for key, value in fields.items()])


def _text_value(value) -> str:
    if value is None:
        return "-"
    text = f"{value:.3f}" if isinstance(value, float) else str(value)
    return json.dumps(text) if not text or any(char in text for char in ' ="') else text


class Backoff:
    """Capped exponential backoff with jitter: each delay is drawn from the upper half of its step."""

    def __init__(self, base: float, cap: float) -> None:
        self.base, self.cap, self.attempt = base, cap, 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * 2 ** self.attempt)
        self.attempt += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0


class Stopping:
    """Set by SIGTERM/SIGINT (or a test); every wait of the worker ends early when it is."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal_name: str | None = None

    def install_signal_handlers(self, log: Log | None = None) -> None:
        # As python-arq's worker does: the first signal lets the pass or refresh in hand finish, the
        # second exits at once (whoever sends it does not want to wait). Each says so at once, written
        # straight to the file descriptor: print() from a handler could re-enter a print in progress.
        def handle(signum, _frame):
            name = signal.Signals(signum).name
            if self.event.is_set():
                self._say(log, "exiting_at_once", signal=name, first_signal=self.signal_name,
                          exit_status=128 + signum)
                os._exit(128 + signum)
            self.signal_name = name
            self.event.set()
            self._say(log, "stop_requested", signal=name,
                      then="the pass or refresh in hand finishes, then exit 0; a second signal exits at once")

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, handle)

    @staticmethod
    def _say(log: Log | None, event: str, **fields) -> None:
        if log is not None:
            os.write(log.stream.fileno(), (log.line(event, **fields) + "\n").encode())

    def __bool__(self) -> bool:
        return self.event.is_set()

    def wait(self, seconds: float) -> bool:
        return self.event.wait(max(seconds, 0))


@dataclass
class Totals:
    passes: int = 0
    events: int = 0
    keys_applied: int = 0
    refreshes: int = 0


def follow(engine: Engine, options: FollowOptions, log: Log, stopping: Stopping) -> Totals:
    """Run until ``stopping`` is set; returns what was done. Raises SyncBusy only with --no-wait."""
    totals = Totals()
    backoff = Backoff(options.backoff_base, options.backoff_cap)
    schedule = RefreshSchedule(options.refresh_every, options.refresh_after_change, log)
    log("started", pattern=options.pattern, redis=mask(options.redis_url),
        database=mask(engine.url), reconcile_every=options.reconcile_every,
        refresh_every=options.refresh_every, refresh_after_change=options.refresh_after_change)
    while not stopping:
        try:
            with ExitStack() as resources:
                lock = resources.enter_context(_advisory_lock(engine, options, log, stopping))
                if lock is None:
                    break
                _work(engine, options, log, stopping, totals, lock, backoff, schedule)
        except SyncBusy:
            raise
        except AuthenticationFailed as exc:
            # A refused password does not heal by waiting: say so and exit (status 78), so that the
            # service shows as failed instead of running without syncing anything.
            log("authentication_failed", error=exc.message, exit_status=exc.exit_code)
            raise
        except (DatabaseUnavailable, sa.exc.OperationalError, sa.exc.InterfaceError, psycopg.OperationalError) as exc:
            _retry(log, backoff, stopping, "database_unavailable", mask(engine.url), exc)
        except (syncing.RedisUnavailable, *syncing.REDIS_ERRORS) as exc:
            # The source tables still change: the metrics go on being refreshed while Redis is away.
            _retry(log, backoff, stopping, "redis_unavailable", mask(options.redis_url), exc,
                   between=lambda: _refresh_if_due(engine, log, schedule))
    schedule.close()
    if stopping.signal_name:
        log("stopping", signal=stopping.signal_name)
    totals.refreshes = schedule.total
    log("stopped", passes=totals.passes, events=totals.events, keys_applied=totals.keys_applied,
        refreshes=totals.refreshes)
    return totals


def exit_after_signal(engine: Engine, stopping: Stopping) -> None:
    """When a signal stopped the worker: close the database connections, flush, and exit 0 at once.

    The interpreter's own teardown (freeing every module's objects) took 0.2-0.5 s here and seconds
    on a loaded host, a process still alive after saying "stopped" to whoever sent the signal.
    """
    if not stopping.signal_name:
        return
    engine.dispose()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _retry(log: Log, backoff: Backoff, stopping: Stopping, event: str, server: str, exc: BaseException,
           between=None) -> None:
    """Log the fault in one line and wait out the backoff; ``between`` runs whenever it returns a
    wait (the refresh schedule's) shorter than what is left."""
    delay = backoff.next_delay()
    log(event, server=server, error=syncing.first_line(exc), attempt=backoff.attempt, retry_in_seconds=delay)
    until = time.monotonic() + delay
    while not stopping:
        left = until - time.monotonic()
        pause = between() if between is not None else left
        if stopping.wait(min(left, pause)) or left <= pause:
            return


def _refresh_if_due(engine: Engine, log: Log, schedule: RefreshSchedule) -> float:
    """Refresh when due; the seconds until the next is due. A database fault here is logged once and
    not raised (the caller is already waiting for Redis); no refresh is tried again in that wait."""
    try:
        schedule.run_if_due(engine)
    except (DatabaseUnavailable, sa.exc.OperationalError, sa.exc.InterfaceError, psycopg.OperationalError) as exc:
        log("refresh_failed", reason="interval", error=syncing.first_line(exc))
        return float("inf")
    return schedule.seconds_until_due()


def lock_connection(engine: Engine) -> psycopg.Connection:
    """A connection of its own for the worker's advisory lock (a pooled one could be given back)."""
    try:
        return psycopg.connect(db.libpq_url(engine.url), autocommit=True, connect_timeout=10,
                               application_name="flywheel-sync worker")
    except psycopg.OperationalError as exc:
        raise db.unavailable(engine.url, exc) from exc


def try_lock(connection: psycopg.Connection) -> bool:
    return connection.execute("select pg_try_advisory_lock(%s, %s)", LOCK_KEY).fetchone()[0]


@contextmanager
def exclusive(engine: Engine):
    """Hold the worker's lock for one pass; SyncBusy when a worker (or another pass) holds it."""
    connection = lock_connection(engine)
    try:
        if not try_lock(connection):
            raise SyncBusy(f"another sync holds the lock of this database ({lock_holder(connection)}); "
                           "a running worker keeps the table in step already")
        yield
    finally:
        connection.close()


@contextmanager
def _advisory_lock(engine: Engine, options: FollowOptions, log: Log, stopping: Stopping):
    """A connection holding the worker's advisory lock, or None when told to stop while waiting."""
    connection = lock_connection(engine)
    try:
        while not try_lock(connection):
            holder = lock_holder(connection)
            if not options.wait_for_lock:
                raise SyncBusy(f"another sync worker holds the lock of this database ({holder}); "
                               "one worker keeps the table in step, so this one exits (drop --no-wait to wait)")
            log("lock_busy", holder=holder, retry_in_seconds=options.lock_retry_seconds)
            if stopping.wait(options.lock_retry_seconds):
                yield None
                return
        log("lock_acquired", lock="flyw/2", backend_pid=connection.info.backend_pid)
        yield connection
    finally:
        connection.close()


# Who holds the lock. pg_stat_activity shows any login the pid, user and application of every session,
# but the address and start time of another user's sessions only to members of pg_read_all_stats:
# those come back NULL here, and are said to be hidden.
LOCK_HOLDER = """
select a.pid, a.usename, a.application_name, host(a.client_addr), a.client_port, a.backend_start,
       case when to_regrole('flywheel_refresher') is null then null
            else pg_has_role(a.usesysid, 'flywheel_refresher', 'member') end as is_flywheel_login
from pg_locks l join pg_stat_activity a using (pid)
where l.locktype = 'advisory' and l.classid::bigint = %s and l.objid::bigint = %s and l.granted
"""


def lock_holder(connection: psycopg.Connection) -> str:
    """The session holding the worker's lock, in words: pid, login, application, address, since when."""
    row = connection.execute(LOCK_HOLDER, LOCK_KEY).fetchone()
    if row is None:
        return "its holder is not visible to this login"
    pid, login, application, address, port, since, is_flywheel_login = row
    where = "address hidden from this login" if port is None else "a local socket" if port == -1 else address
    described = [f"backend pid {pid}", f"login {login or 'unknown'}", application or "no application name",
                 f"from {where}", f"since {since:%Y-%m-%d %H:%M:%S%z}" if since else "start time hidden"]
    if is_flywheel_login is False:
        described.append(f"not a flywheel login: if it should not hold the lock, end it with "
                         f"select pg_terminate_backend({pid})")
    return ", ".join(described)


def _work(engine, options: FollowOptions, log: Log, stopping: Stopping, totals: Totals,
          lock: psycopg.Connection, backoff: Backoff, schedule: RefreshSchedule) -> None:
    client = syncing.connect_redis(options.redis_url)
    subscriptions = []
    try:
        subscriptions = _subscribe(client, options, log)
        pending: set[bytes] = set()
        collect = functools.partial(_drain, subscriptions, pending, totals, stopping)
        next_pass = 0.0
        next_lock_check = time.monotonic() + LOCK_CHECK_SECONDS
        while not stopping:
            if time.monotonic() >= next_pass:
                next_pass = time.monotonic() + options.reconcile_every
                _reconcile(engine, client, options, log, totals, collect, pending, schedule)
                backoff.reset()
            idle = min(IDLE_WAIT_SECONDS, schedule.seconds_until_due())
            _drain(subscriptions, pending, totals, stopping, wait_seconds=idle)
            if pending:
                stopping.wait(EVENT_WINDOW_SECONDS)
                collect()
                _apply(engine, client, options, log, totals, pending, schedule)
            schedule.run_if_due(engine)
            if time.monotonic() >= next_lock_check:
                lock.execute("select 1")  # a restarted server took the lock with it: reconnect and retake
                next_lock_check = time.monotonic() + LOCK_CHECK_SECONDS
            if not subscriptions:
                stopping.wait(min(idle, max(0.0, next_pass - time.monotonic())))
    except syncing.Interrupted:
        pass
    finally:
        for subscription in subscriptions:
            subscription.close()
        client.close()


def _reconcile(engine, client, options: FollowOptions, log: Log, totals: Totals, collect, pending: set[bytes],
               schedule: RefreshSchedule) -> None:
    """A full pass; events arriving meanwhile are collected into ``pending`` and spared its deletes.

    The refresh keeps its interval during the pass (between its batches): a pass over 100,000 keys
    took 20-38 s on a loaded machine, and source-table changes would have waited for its end."""

    def between_batches() -> None:
        collect()
        schedule.run_if_due(engine)

    result = syncing.sync_pass(engine, client, options.pattern, mode="follow",
                               between_batches=between_batches, protected=lambda: pending,
                               allow_mass_delete=options.allow_mass_delete)
    totals.passes += 1
    log("reconciled", **{key: value for key, value in result.as_dict().items() if key != "mode"})
    if result.error == syncing.STOPPED:
        raise syncing.Interrupted(result.error)
    if result.error and result.error.startswith(syncing.MASS_DELETE_REFUSED):
        # Not a fault to retry: the worker keeps applying events and says so again at each pass.
        log("mass_delete_refused", sync_id=result.sync_id, error=result.error)
        return
    if not result.complete:
        raise redis.exceptions.ConnectionError(result.error or "incomplete pass")
    if result.inserted + result.updated + result.deleted:
        schedule.changed()


def _apply(engine, client, options: FollowOptions, log: Log, totals: Totals, pending: set[bytes],
           schedule: RefreshSchedule) -> None:
    keys = list(pending)
    result = syncing.apply_keys(engine, client, keys, options.pattern)
    pending.difference_update(keys)
    totals.keys_applied += len(keys)
    log("applied", keys=len(keys), inserted=result.inserted, updated=result.updated,
        unchanged=result.unchanged, deleted=result.deleted, invalid=result.invalid)
    if result.inserted + result.updated + result.deleted:
        schedule.changed()


def _subscribe(client, options: FollowOptions, log: Log) -> list:
    """Keyspace subscriptions, one per primary; none (reconciliation only) when notifications are off."""
    nodes = client.get_primaries() if isinstance(client, RedisCluster) else [None]
    subscriptions = []
    for node in nodes:
        node_client = node.redis_connection if node is not None else client
        where = node.name if node is not None else "redis"
        if not _notifications_enabled(node_client, options, log, where):
            for subscription in subscriptions:
                subscription.close()
            return []
        database = node_client.connection_pool.connection_kwargs.get("db", 0)
        subscription = node_client.pubsub(ignore_subscribe_messages=True)
        subscription.psubscribe(f"__keyspace@{database}__:{options.pattern}")
        subscriptions.append(subscription)
    log("subscribed", channels=len(subscriptions), flags=NOTIFY_FLAGS)
    return subscriptions


def _notifications_enabled(node_client, options: FollowOptions, log: Log, where: str) -> bool:
    """Turn the flags on when allowed; otherwise say how, and fall back to periodic reconciliation."""
    try:
        current = node_client.config_get("notify-keyspace-events").get("notify-keyspace-events", "")
        current = current.decode() if isinstance(current, bytes) else current
        effective = current.replace("A", "g$lshzxet")
        missing = "".join(flag for flag in NOTIFY_FLAGS if flag not in effective)
        if missing:
            node_client.config_set("notify-keyspace-events", current + missing)
            log("notifications_enabled", node=where, flags=current + missing, were=current or "(none)")
        return True
    except redis.exceptions.ResponseError as exc:
        log("notifications_unavailable", node=where, error=syncing.first_line(exc),
            fix=f"redis-cli CONFIG SET notify-keyspace-events {NOTIFY_FLAGS} (or notify-keyspace-events "
                f"{NOTIFY_FLAGS} in redis.conf; CONFIG is refused to this user)",
            fallback=f"changes appear at the next reconciliation, every {options.reconcile_every:g} s")
        return False


def _drain(subscriptions: list, pending: set[bytes], totals: Totals, stopping: Stopping,
           wait_seconds: float = 0.0) -> None:
    """Move the keys named by notifications into ``pending``, waiting up to ``wait_seconds`` for the
    first; raise Interrupted when stopping (the pass hook: the batch in hand is already written)."""
    if stopping:
        raise syncing.Interrupted(syncing.STOPPED)
    timeout = wait_seconds / max(len(subscriptions), 1)
    for subscription in subscriptions:
        while (message := subscription.get_message(timeout=timeout)) is not None:
            timeout = 0.0
            if message["type"] == "pmessage":
                # The channel is __keyspace@<db>__:<key>; the key may hold colons, the prefix does not.
                pending.add(message["channel"].split(b":", 1)[1])
                totals.events += 1

