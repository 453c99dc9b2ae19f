"""One sync pass: make flywheel.playbooks equal to the Redis playbook records.

A pass SCANs the key pattern, reads values a batch at a time (one MGET per SCAN batch, never a round
trip per key), and writes each batch with one statement, on two writer threads while the next batch
is read. What makes it cheap when little changed: the table's content hashes are read once at the
start, so a value whose hash is unchanged is neither parsed nor rewritten (its ``last_seen_at`` is
bumped, in bulk with its batch, only once it is older than LAST_SEEN_RESOLUTION).

A value over the size limit (validation.MAX_VALUE_BYTES) is invalid whatever it holds, so it is never
fetched: a pipelined STRLEN of the batch comes first, and the MGET reads only the values within the
limit. A batch PostgreSQL refuses (a record whose counts would take the mirror's totals beyond
bigint, or anything validation missed) is written again key by key, so that only the key it refuses
becomes an invalid row, with PostgreSQL's reason; the pass never fails for one key.

Deletion is exact: after a *complete* scan, the rows the pass found at its start whose keys it did
not see are gone from Redis. A pass that would delete more than half the rows it found (a pattern
typo, an emptied Redis) deletes nothing and says so, unless told ``allow_mass_delete``. A pass cut short (Redis dropped, a timeout, a stop) deletes nothing and
is recorded as incomplete. SCAN may return a key twice (the pass skips repeats) and may or may not
return a key changed during the scan; the follow mode (:mod:`flywheel_sync.mirror.worker`) covers those
with the keyspace events it applies after the pass, and the pass spares the keys those events name
and every row written since it started.

Everything read from Redis reaches PostgreSQL as a parameter (arrays unnested server-side), never as
SQL text.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import queue
import random
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import NamedTuple

import psycopg
import redis
import sqlalchemy as sa
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry
from sqlalchemy.engine import Engine

from ..database import db
from ..errors import AuthenticationFailed, FlywheelError
from ..urls import REDIS_URL_ENV, mask, problem
from . import validation
from .validation import DEFAULT_PATTERN

SCAN_COUNT = 1000
REDIS_TIMEOUT_SECONDS = 10.0
WRITER_THREADS = 2
KNOWN_ROWS_FETCH = 10_000
# last_seen_at of an unchanged row is bumped only when older than this: bumping every row on every
# pass would cost more than the rest of a no-change pass. The exact "seen at" of every row present is
# the start of the last complete pass in flywheel.sync_log.
LAST_SEEN_RESOLUTION = timedelta(hours=1)
STOPPED = "stopped by signal"
# A complete pass deletes no more than this share of the rows it found without allow_mass_delete.
MASS_DELETE_SHARE = 0.5
MASS_DELETE_REFUSED = "mass delete refused"
NO_REDIS = f"no Redis given: set {REDIS_URL_ENV} or pass --redis-url (redis://host:6379/0)"
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.ClusterError)


class RedisUnavailable(FlywheelError):
    """The Redis URL is missing, or the server cannot be reached with it."""


class SyncIncomplete(FlywheelError):
    """A pass could not see the whole key space; it deleted nothing and is recorded as incomplete."""


@dataclass
class PassResult:
    """What one pass did; the same numbers as its flywheel.sync_log row."""

    sync_id: int
    mode: str
    complete: bool = False
    scanned: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    invalid: int = 0
    seconds: float = 0.0
    error: str | None = None

    def as_dict(self) -> dict:
        # Milliseconds are the clock's real resolution here; more digits are noise to a reader.
        return {**asdict(self), "seconds": round(self.seconds, 3)}

    def line(self, with_error: bool = True) -> str:
        """The pass in one line; without its error where the caller says it next (the CLI's Error line)."""
        state = "complete" if self.complete else f"INCOMPLETE ({self.error})" if with_error else "INCOMPLETE"
        return (f"sync {self.sync_id} {state}: {self.scanned:,} scanned, {self.inserted:,} inserted, "
                f"{self.updated:,} updated, {self.unchanged:,} unchanged, {self.deleted:,} deleted, "
                f"{self.invalid:,} invalid in {self.seconds:.2f} s")


@dataclass
class Batch:
    """One batch of keys read from Redis, sorted into what the table needs done."""

    keys: list[bytes] = field(default_factory=list)
    records: list[validation.Record] = field(default_factory=list)
    hashes: list[bytes] = field(default_factory=list)
    new: list[bool] = field(default_factory=list)
    unchanged: list[bytes] = field(default_factory=list)
    stale: list[bytes] = field(default_factory=list)
    gone: list[bytes] = field(default_factory=list)
    invalid: int = 0
    # Keys PostgreSQL refused even as an invalid row (a key beyond the index's row size), with why.
    unstorable: list[tuple[bytes, str]] = field(default_factory=list)


class Known(NamedTuple):
    """A row of the table as the pass found it: enough to tell an unchanged value."""

    content_hash: bytes
    valid: bool
    stale: bool


@dataclass(frozen=True)
class InvalidRow:
    playbook_id: str
    redis_key: bytes
    invalid_reason: str
    raw_excerpt: str | None
    changed_at: str


# ---------------------------------------------------------------------------------------------------
# Redis


def require_redis_url(url: str | None) -> str:
    """The URL, or RedisUnavailable when it is missing or cannot be read (before anything connects)."""
    if not url:
        raise RedisUnavailable(NO_REDIS)
    malformed = problem(url)
    if malformed:
        raise RedisUnavailable(f"the Redis URL cannot be read: {malformed}")
    return url


def connect_redis(url: str | None) -> redis.Redis | RedisCluster:
    """A client for the URL: a cluster client when the server says it is part of a Redis Cluster."""
    url = require_redis_url(url)
    options = {"socket_timeout": REDIS_TIMEOUT_SECONDS, "socket_connect_timeout": REDIS_TIMEOUT_SECONDS}
    try:
        # No silent reconnects: a connection dropped mid-SCAN must end the pass as incomplete, and a
        # keyspace subscription that reconnected by itself would hide the events it lost meanwhile.
        # The worker retries, with its own backoff, from a full pass.
        client = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **options)
        cluster = client.info("cluster").get("cluster_enabled") == 1
        if cluster:
            client.close()
            client = RedisCluster.from_url(url, **options)
        return client
    except (*REDIS_ERRORS, redis.exceptions.ResponseError, ValueError) as exc:
        raise redis_unavailable(url, exc) from exc


def first_line(exc: BaseException) -> str:
    """An exception in one line: its message's first line, or its type when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def redis_unavailable(url: str, exc: BaseException) -> FlywheelError:
    """One line for a Redis that refused the credentials (AuthenticationFailed) or cannot be reached."""
    detail = first_line(exc).rstrip(".")
    if is_authentication_failure(exc):
        if "HELLO must be called" in detail or "NOAUTH" in detail:
            return AuthenticationFailed(
                f"Redis at {mask(url)} wants a password: put it in the URL, URL-encoded "
                f"(redis://:PASSWORD@host:6379/0, or redis://USER:PASSWORD@host:6379/0 for an ACL user), "
                f"in {REDIS_URL_ENV} or --redis-url.")
        return AuthenticationFailed(
            f"Redis at {mask(url)} refused the user and password of the URL ({detail}). "
            f"Check them in {REDIS_URL_ENV} or --redis-url (URL-encoded; an ACL user as redis://USER:PASSWORD@host).")
    return RedisUnavailable(
        f"cannot reach Redis at {mask(url)}: {detail}. "
        f"Check that the server is up and the URL is right ({REDIS_URL_ENV} or --redis-url)."
    )


def is_authentication_failure(exc: BaseException) -> bool:
    return isinstance(exc, redis.exceptions.AuthenticationError) or str(exc).startswith("NOAUTH")


def key_prefix(pattern: str) -> bytes:
    """The part of every matching key that is not the playbook id: up to the last ':' before a wildcard."""
    literal = pattern
    for wildcard in "*?[\\":
        literal = literal.split(wildcard, 1)[0]
    return literal[: literal.rfind(":") + 1].encode()


def playbook_id(key: bytes, prefix: bytes) -> str:
    return validation.readable(key[len(prefix):] if key.startswith(prefix) else key)


def scan_batches(client, pattern: str) -> Iterator[list[bytes]]:
    """The keys matching ``pattern``, SCAN_COUNT at a time (every primary of a cluster)."""
    batch: list[bytes] = []
    for key in client.scan_iter(match=pattern, count=SCAN_COUNT):
        batch.append(key)
        if len(batch) == SCAN_COUNT:
            yield batch
            batch = []
    if batch:
        yield batch


def value_sizes(client, keys: list[bytes]) -> list[int | None]:
    """STRLEN of each key in one round trip: 0 for a key gone, None for a key of another type."""
    pipeline = client.pipeline(transaction=False)
    for key in keys:
        pipeline.strlen(key)
    return [size if isinstance(size, int) else None for size in pipeline.execute(raise_on_error=False)]


def read_values(client, keys: list[bytes]) -> list[bytes | None]:
    """The string values of ``keys`` in one round trip (one per node on a cluster); None when not a string."""
    if isinstance(client, RedisCluster):
        return client.mget_nonatomic(keys)
    return client.mget(keys)


def redis_types(client, keys: list[bytes]) -> list[str]:
    pipeline = client.pipeline(transaction=False)
    for key in keys:
        pipeline.type(key)
    return [kind.decode() if isinstance(kind, bytes) else kind for kind in pipeline.execute()]


def read_batch(client, keys: list[bytes], known: dict[bytes, Known] | None) -> Batch:
    """Read ``keys`` and sort them: new or changed (validated), unchanged, gone, of another type.

    ``known`` is the table as the pass found it; None when unknown (every key is then written with
    an upsert, as the follow mode does for the keys its events name).
    """
    batch = Batch()
    sizes = value_sizes(client, keys)
    within_limit = [key for key, size in zip(keys, sizes) if size is not None and size <= validation.MAX_VALUE_BYTES]
    oversized = [(key, size) for key, size in zip(keys, sizes) if size is not None and size > validation.MAX_VALUE_BYTES]
    values = read_values(client, within_limit)
    missing = [key for key, size in zip(keys, sizes) if size is None]
    missing += [key for key, value in zip(within_limit, values) if value is None]
    found = {key: value for key, value in zip(within_limit, values) if value is not None}
    if oversized:
        _read_oversized(client, oversized, batch, known)
    if missing:
        _read_missing(client, missing, found, batch, known)
    for key, value in found.items():
        _sort(batch, key, _hash(value), known, validation.validate, value)
    return batch


def _read_missing(client, missing: list[bytes], found: dict[bytes, bytes], batch: Batch,
                  known: dict[bytes, Known] | None) -> None:
    """MGET gives None both for a key gone since SCAN and for a key of another type: TYPE tells them apart."""
    reappeared = []
    for key, kind in zip(missing, redis_types(client, missing)):
        if kind == "none":
            batch.gone.append(key)
        elif kind == "string":
            reappeared.append(key)
        else:
            _sort(batch, key, _hash(b"type:" + kind.encode()), known, validation.wrong_type, kind)
    if reappeared:
        for key, value in zip(reappeared, read_values(client, reappeared)):
            if value is None:
                batch.gone.append(key)
            else:
                found[key] = value


def _read_oversized(client, oversized: list[tuple[bytes, int]], batch: Batch, known: dict[bytes, Known] | None) -> None:
    """Values over the limit: invalid from their size and first bytes (GETRANGE), never fetched whole."""
    pipeline = client.pipeline(transaction=False)
    for key, _ in oversized:
        pipeline.getrange(key, 0, validation.EXCERPT_BYTES - 1)
    for (key, size), head in zip(oversized, pipeline.execute(raise_on_error=False)):
        head = head if isinstance(head, bytes) else b""
        _sort(batch, key, _hash(b"oversized:%d:" % size + head), known, lambda raw: validation.oversized(*raw), (size, head))


def _hash(value: bytes) -> bytes:
    return hashlib.blake2b(value, digest_size=16).digest()


def _sort(batch: Batch, key: bytes, content_hash: bytes, known: dict[bytes, Known] | None,
          make_record: Callable, raw) -> None:
    """Unchanged (same hash as the table's row), or new or changed: then ``make_record(raw)``, to be written."""
    before = known.get(key) if known is not None else None
    if before is not None and before.content_hash == content_hash:
        batch.unchanged.append(key)
        if before.stale:
            batch.stale.append(key)
        batch.invalid += not before.valid
        return
    written = make_record(raw)
    batch.keys.append(key)
    batch.records.append(written)
    batch.hashes.append(content_hash)
    batch.new.append(known is not None and before is None)
    batch.invalid += not written.valid


# ---------------------------------------------------------------------------------------------------
# PostgreSQL

# One statement per batch; the parameters travel as binary arrays (%(name)b), which psycopg dumps
# ten times faster than text arrays. The parts touch disjoint keys (a pass handles a key once), so no
# row is written twice. Keys the table did not hold at the pass's start take a plain insert (an
# upsert costs PostgreSQL a quarter more per row); the rest an upsert, whose changed_at moves only
# when the hash did: a write of an equal value (the follow mode re-reads the keys it is told about)
# changes nothing but last_seen_at.
WRITE_BATCH = """
with incoming as (
    select *
    from unnest(%(keys)b::bytea[], %(ids)b::text[], %(statuses)b::text[], %(successes)b::bigint[],
                %(failures)b::bigint[], %(documents)b::text[], %(excerpts)b::text[], %(reasons)b::text[],
                %(hashes)b::bytea[], %(new)b::boolean[])
        as t(redis_key, playbook_id, status, success_count, failure_count, document, raw_excerpt,
             invalid_reason, content_hash, is_new)
),
fresh as (
    insert into flywheel.playbooks (redis_key, playbook_id, status, success_count, failure_count,
                                    document, raw_excerpt, valid, invalid_reason, content_hash)
    select redis_key, playbook_id, status, success_count, failure_count, cast(document as jsonb),
           raw_excerpt, invalid_reason is null, invalid_reason, content_hash
    from incoming
    where is_new
    returning 1
),
written as (
    insert into flywheel.playbooks as p (redis_key, playbook_id, status, success_count, failure_count,
                                         document, raw_excerpt, valid, invalid_reason, content_hash)
    select redis_key, playbook_id, status, success_count, failure_count, cast(document as jsonb),
           raw_excerpt, invalid_reason is null, invalid_reason, content_hash
    from incoming
    where not is_new
    on conflict (redis_key) do update set
        playbook_id = excluded.playbook_id, status = excluded.status,
        success_count = excluded.success_count, failure_count = excluded.failure_count,
        document = excluded.document, raw_excerpt = excluded.raw_excerpt, valid = excluded.valid,
        invalid_reason = excluded.invalid_reason, content_hash = excluded.content_hash,
        last_seen_at = now(),
        changed_at = case when p.content_hash = excluded.content_hash then p.changed_at else now() end
    returning xmax = 0 as inserted, p.changed_at = now() as changed
),
seen as (
    update flywheel.playbooks set last_seen_at = now()
    where redis_key = any(%(stale)b::bytea[])
    returning 1
),
removed as (
    delete from flywheel.playbooks where redis_key = any(%(gone)b::bytea[])
    returning 1
)
select (select count(*) from fresh) + count(*) filter (where inserted),
       count(*) filter (where changed and not inserted),
       count(*) filter (where not changed),
       (select count(*) from removed)
from written
"""

# After a complete scan: the rows the pass found at its start whose keys it did not see are gone
# from Redis. A row written since the start (a keyspace event of the follow mode) is spared.
DELETE_UNSEEN = sa.text("""
delete from flywheel.playbooks
where redis_key = any(cast(:unseen as bytea[])) and last_seen_at < :pass_started
""")

START_LOG = sa.text("""
insert into flywheel.sync_log (started_at, mode, complete) values (now(), :mode, false)
returning sync_id, started_at
""")

FINISH_LOG = sa.text("""
update flywheel.sync_log
set finished_at = clock_timestamp(), complete = :complete, scanned = :scanned, inserted = :inserted,
    updated = :updated, unchanged = :unchanged, deleted = :deleted, invalid = :invalid, error = :error
where sync_id = :sync_id
""")

PRUNE_LOG = sa.text("""
delete from flywheel.sync_log
where started_at < now() - cast(flywheel.setting('retention') #>> '{}' as interval)
""")


def known_rows(engine: Engine) -> dict[bytes, Known]:
    """The table's rows at the start of a pass: hash, validity, and whether last_seen_at needs a bump.

    Read through a server-side cursor, KNOWN_ROWS_FETCH at a time, so that only the dict is ever
    held whole (a fetchall would hold every row a second time while the dict is built).
    """
    try:
        with db.connect(engine) as connection, connection.connection.cursor("flywheel_known_rows") as cursor:
            cursor.itersize = KNOWN_ROWS_FETCH
            cursor.execute(
                "select redis_key, content_hash, valid, last_seen_at < now() - %s from flywheel.playbooks",
                (LAST_SEEN_RESOLUTION,), binary=True)
            return {key: Known(content_hash, valid, stale) for key, content_hash, valid, stale in cursor}
    except psycopg.OperationalError as exc:
        raise db.unavailable(engine.url, exc) from exc


def write_batch(connection: sa.Connection, batch: Batch, prefix: bytes) -> tuple[int, int, int, int]:
    """Write one batch; returns counts (inserted, updated, rewritten_equal, removed)."""
    records = batch.records
    with connection.connection.cursor() as cursor:
        cursor.execute(WRITE_BATCH, {
            "keys": batch.keys,
            "ids": [playbook_id(key, prefix) for key in batch.keys],
            "statuses": [record.status for record in records],
            "successes": [record.success_count for record in records],
            "failures": [record.failure_count for record in records],
            "documents": [record.document for record in records],
            "excerpts": [record.raw_excerpt for record in records],
            "reasons": [record.invalid_reason for record in records],
            "hashes": batch.hashes,
            "new": batch.new,
            "stale": batch.stale,
            "gone": batch.gone,
        })
        return cursor.fetchone()


def start_log(engine: Engine, mode: str) -> tuple[int, object]:
    with db.connect(engine) as connection:
        db.require_schema(connection)
        row = connection.execute(START_LOG, {"mode": mode}).one()
        return row.sync_id, row.started_at


def finish_log(engine: Engine, result: PassResult) -> None:
    with db.connect(engine) as connection:
        values = result.as_dict()
        del values["mode"], values["seconds"]
        connection.execute(FINISH_LOG, values)
        connection.execute(PRUNE_LOG)


# ---------------------------------------------------------------------------------------------------
# The pass


# Marks a known row whose key the pass has read: its hash is no longer needed.
_READ = Known(b"", True, False)


class SeenKeys:
    """The keys a pass has read, without a second copy of the key space.

    A key the table held at the start is marked in ``known`` (which holds it already); only the keys
    new to the table are kept here. What is left unmarked at the end is what Redis no longer has.
    """

    def __init__(self, known: dict[bytes, Known]) -> None:
        self.known = known
        self.new: set[bytes] = set()

    def __contains__(self, key: bytes) -> bool:
        return self.known.get(key) is _READ or key in self.new

    def add(self, keys: Iterable[bytes]) -> None:
        for key in keys:
            if key in self.known:
                self.known[key] = _READ
            else:
                self.new.add(key)

    def unseen(self) -> Iterator[bytes]:
        return (key for key, row in self.known.items() if row is not _READ)


class Interrupted(Exception):
    """Raised by a ``between_batches`` hook to end a pass early (the worker was told to stop)."""


class BatchWriter:
    """Writes batches on WRITER_THREADS threads, each with its connection, while the next batch is read.

    On two cores, PostgreSQL's work (parsing jsonb, the index) then runs beside the reading thread's
    Python. The threads never touch one row both: a pass hands each key over once. The queue is short,
    so Redis is never far ahead, and every batch handed over is written (or its transaction rolled
    back) before :meth:`close` returns.
    """

    def __init__(self, engine: Engine, prefix: bytes, result: PassResult) -> None:
        self.engine, self.prefix, self.result = engine, prefix, result
        self.queue: queue.Queue[Batch | None] = queue.Queue(maxsize=2 * WRITER_THREADS)
        self.counting = threading.Lock()
        self.failure: BaseException | None = None
        self.threads = [threading.Thread(target=self._run, name=f"flywheel-sync-writer-{number}", daemon=True)
                        for number in range(WRITER_THREADS)]
        for thread in self.threads:
            thread.start()

    def put(self, batch: Batch) -> None:
        while True:
            self._raise_failure()
            try:
                self.queue.put(batch, timeout=0.5)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        for thread in self.threads:
            while thread.is_alive():
                try:
                    self.queue.put(None, timeout=0.5)
                    break
                except queue.Full:
                    continue
        for thread in self.threads:
            thread.join()
        self._raise_failure()

    def _raise_failure(self) -> None:
        if self.failure is not None:
            raise self.failure

    def _run(self) -> None:
        while (batch := self.queue.get()) is not None:
            if self.failure is not None:
                continue
            try:
                counts = write(self.engine, batch, self.prefix)
            except BaseException as exc:  # handed to the reading thread, which raises it
                self.failure = exc
                continue
            with self.counting:
                _count(self.result, batch, counts)


def sync_pass(engine: Engine, client, pattern: str = DEFAULT_PATTERN, mode: str = "pass",
              progress: Callable[[int], None] | None = None,
              between_batches: Callable[[], None] | None = None,
              protected: Callable[[], Collection[bytes]] = frozenset,
              allow_mass_delete: bool = False) -> PassResult:
    """One full reconciliation of the keys matching ``pattern``; see the module's docstring.

    Returns the result, complete or not: a Redis failure mid-pass, or ``between_batches`` raising
    Interrupted, ends it as incomplete (recorded, nothing deleted), and so does a mass delete
    refused. A PostgreSQL failure raises DatabaseUnavailable, after recording the pass as failed when
    the database still answers. ``between_batches`` lets the follow mode collect keyspace events
    while the pass runs; ``protected`` names the keys they touched.
    """
    clock = time.monotonic()
    sync_id, pass_started = start_log(engine, mode)
    result = PassResult(sync_id, mode)
    try:
        _run_pass(engine, client, pattern, result, pass_started, progress, between_batches, protected,
                  allow_mass_delete)
    except BaseException as exc:
        # The sync_log row says how the pass ended, whatever ended it (its row is never left open
        # while the database answers).
        result.complete = False
        result.error = result.error or f"failed: {first_line(exc)}"
        result.seconds = time.monotonic() - clock
        with contextlib.suppress(Exception):
            finish_log(engine, result)
        raise
    result.seconds = time.monotonic() - clock
    finish_log(engine, result)
    return result


def _run_pass(engine: Engine, client, pattern: str, result: PassResult, pass_started, progress, between_batches,
              protected, allow_mass_delete: bool) -> None:
    known = known_rows(engine)
    rows_found = len(known)
    seen = SeenKeys(known)
    writer = BatchWriter(engine, key_prefix(pattern), result)
    try:
        for scanned in scan_batches(client, pattern):
            fresh = list(dict.fromkeys(key for key in scanned if key not in seen))
            batch = read_batch(client, fresh, known)
            seen.add(fresh)
            writer.put(batch)
            if progress:
                progress(len(scanned))
            if between_batches:
                between_batches()
        result.complete = True
    except REDIS_ERRORS as exc:
        result.error = f"Redis: {str(exc).strip() or type(exc).__name__}"
    except Interrupted as exc:
        result.error = str(exc) or "interrupted"
    finally:
        writer.close()
    if not result.complete:
        return
    spared = set(protected())
    unseen = [key for key in seen.unseen() if key not in spared]
    if len(unseen) > MASS_DELETE_SHARE * rows_found and not allow_mass_delete:
        result.complete = False
        result.error = mass_delete_refusal(len(unseen), rows_found)
        return
    with db.connect(engine) as connection:
        result.deleted += connection.execute(
            DELETE_UNSEEN, {"unseen": unseen, "pass_started": pass_started}).rowcount


def mass_delete_refusal(unseen: int, rows_found: int) -> str:
    return (f"{MASS_DELETE_REFUSED}: the pass would delete {unseen:,} of the {rows_found:,} rows of the mirror "
            f"(more than {MASS_DELETE_SHARE:.0%}), as a pattern that matches nothing or an emptied Redis would; "
            "nothing was deleted. Check --pattern and Redis; if the keys are really gone, run "
            "`flywheel-sync sync --allow-mass-delete` once")


# What PostgreSQL refuses in the values of a record: data exceptions (class 22: numeric or bigint out
# of range, in the totals' trigger too), constraint violations (23) and limits (54: a key beyond the
# primary key index's row size).
REFUSED = (psycopg.errors.DataError, psycopg.errors.IntegrityError, psycopg.errors.ProgramLimitExceeded)


def write(engine: Engine, batch: Batch, prefix: bytes) -> tuple[int, int, int, int]:
    """Write one batch in a transaction of its own; returns (inserted, updated, rewritten_equal, removed).

    A batch PostgreSQL refuses is written again key by key (see :func:`_write_key_by_key`).
    """
    try:
        return _write_once(engine, batch, prefix)
    except REFUSED:
        return _write_key_by_key(engine, batch, prefix)


def _write_once(engine: Engine, batch: Batch, prefix: bytes) -> tuple[int, int, int, int]:
    try:
        with db.connect(engine) as connection:
            return write_batch(connection, batch, prefix)
    except psycopg.errors.UniqueViolation:
        # A key new at the pass's start was written meanwhile by someone not holding the worker's
        # lock (a library caller): write the batch again, every key by upsert.
        batch.new = [False] * len(batch.keys)
        return _write_once(engine, batch, prefix)
    except REFUSED:
        raise  # ProgramLimitExceeded is an OperationalError too, but the server is fine
    except psycopg.OperationalError as exc:
        raise db.unavailable(engine.url, exc) from exc


def _write_key_by_key(engine: Engine, batch: Batch, prefix: bytes) -> tuple[int, int, int, int]:
    """Each key of a refused batch in a statement of its own: a key refused alone is written as an
    invalid row with PostgreSQL's reason (counted in ``batch.invalid``); one refused even so is left
    out and named in ``batch.unstorable``. The batch's bumps and deletes go first, together."""
    totals = _write_once(engine, Batch(stale=batch.stale, gone=batch.gone), prefix)
    for key, record, content_hash, new in zip(batch.keys, batch.records, batch.hashes, batch.new):
        single = Batch(keys=[key], records=[record], hashes=[content_hash], new=[new])
        try:
            counts = _write_once(engine, single, prefix)
        except REFUSED as exc:
            single.records = [validation.refused(refusal_reason(exc))]
            batch.invalid += record.valid  # counted invalid, with a row or (unstorable) without
            try:
                counts = _write_once(engine, single, prefix)
            except REFUSED as again:
                batch.unstorable.append((key, refusal_reason(again)))
                continue
        totals = tuple(total + count for total, count in zip(totals, counts))
    return totals


def refusal_reason(exc: psycopg.Error) -> str:
    """The invalid_reason of a record PostgreSQL refused: its words, and what they mean here."""
    message = (exc.diag.message_primary or str(exc)).strip().splitlines()[0]
    if "count_playbooks" in (exc.diag.context or ""):
        return f"its counts would take the mirror's totals beyond bigint ({message})"
    return f"refused by PostgreSQL: {message} (SQLSTATE {exc.sqlstate})"


def _count(result: PassResult, batch: Batch, counts: tuple[int, int, int, int]) -> None:
    inserted, updated, rewritten_equal, removed = counts
    result.scanned += len(batch.keys) + len(batch.unchanged)
    result.inserted += inserted
    result.updated += updated
    result.unchanged += len(batch.unchanged) + rewritten_equal
    result.deleted += removed
    result.invalid += batch.invalid
    if batch.unstorable and result.error is None:
        key, reason = batch.unstorable[0]
        result.error = (f"{len(batch.unstorable)} key(s) PostgreSQL cannot store even as an invalid row, "
                        f"such as {validation.readable(key[:80])!r}: {reason}")


def apply_keys(engine: Engine, client, keys: Iterable[bytes], pattern: str = DEFAULT_PATTERN) -> PassResult:
    """Re-read the named keys and write what Redis holds now (the follow mode's events); not logged."""
    result = PassResult(0, "follow", complete=True)
    keys = list(dict.fromkeys(keys))
    prefix = key_prefix(pattern)
    for start in range(0, len(keys), SCAN_COUNT):
        batch = read_batch(client, keys[start:start + SCAN_COUNT], None)
        _count(result, batch, write(engine, batch, prefix))
    return result


@dataclass(frozen=True)
class Health:
    """Whether a complete pass finished recently: the worker's heartbeat is its sync_log rows."""

    ok: bool
    max_age_seconds: float
    last_complete_sync_id: int | None
    last_complete_finished_at: str | None
    age_seconds: float | None

    def as_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        if self.last_complete_sync_id is None:
            return "no complete sync pass recorded in flywheel.sync_log"
        state = "ok" if self.ok else f"STALE (more than {self.max_age_seconds:g} s)"
        return (f"{state}: last complete pass, sync {self.last_complete_sync_id}, finished "
                f"{self.last_complete_finished_at} ({self.age_seconds:.0f} s ago)")


def health(engine: Engine, max_age_seconds: float) -> Health:
    with db.connect(engine) as connection:
        db.require_schema(connection)
        row = connection.execute(sa.text(
            "select sync_id, finished_at, extract(epoch from clock_timestamp() - finished_at) as age"
            " from flywheel.sync_log where complete order by sync_id desc limit 1"
        )).one_or_none()
    if row is None:
        return Health(False, max_age_seconds, None, None, None)
    age = float(row.age)
    return Health(age <= max_age_seconds, max_age_seconds, row.sync_id, row.finished_at.isoformat(), age)


def invalid_rows(engine: Engine) -> list[InvalidRow]:
    """The invalid records of the mirror, newest change first."""
    with db.connect(engine) as connection:
        db.require_schema(connection)
        rows = connection.execute(sa.text(
            "select playbook_id, redis_key, invalid_reason, raw_excerpt, changed_at from flywheel.playbooks"
            " where not valid order by changed_at desc, playbook_id"
        ))
        return [InvalidRow(row.playbook_id, bytes(row.redis_key), row.invalid_reason, row.raw_excerpt,
                           row.changed_at.isoformat()) for row in rows]


# ---------------------------------------------------------------------------------------------------
# Sample data (demo and benchmark)

SAMPLE_STATUSES = [("approved", 0.6), ("draft", 0.25), ("deprecated", 0.15)]
SAMPLE_INVALID = [
    b'{"id": "PB-BAD-1", "status": "approved", "success_count": "forty-one", "failure_count": 7}',
    b"status=approved; success_count=41",
]


def sample_values(count: int, seed: float = 0.42) -> Iterator[tuple[str, bytes]]:
    """``count`` realistic playbook records (ids PB-1..PB-count), the same for the same seed."""
    chooser = random.Random(seed)
    statuses, weights = zip(*SAMPLE_STATUSES)
    actions = ["restart pod", "scale deployment", "clear disk", "rotate certificate", "failover replica",
               "drain node", "flush queue", "raise connection pool"]
    for number in range(1, count + 1):
        runs = chooser.randint(0, 60)
        successes = round(runs * chooser.uniform(0.2, 0.9))
        record = {
            "id": f"PB-{number}",
            "name": f"{chooser.choice(actions)} for alert group {number % 97}",
            "status": chooser.choices(statuses, weights)[0],
            "success_count": successes,
            "failure_count": runs - successes,
            "steps": chooser.sample(actions, chooser.randint(1, 4)),
            "updated_by": "demo",
        }
        yield f"PB-{number}", json.dumps(record).encode()


def load_sample_playbooks(client, prefix: str, count: int, seed: float = 0.42, invalid: int = 0) -> int:
    """Write ``count`` sample records (and ``invalid`` broken ones, PB-BAD-n) under ``prefix``; how many."""
    pipeline = client.pipeline(transaction=False)
    written = 0
    for identifier, value in sample_values(count, seed):
        pipeline.set(f"{prefix}{identifier}", value)
        written += 1
        if written % SCAN_COUNT == 0:
            pipeline.execute()
    for number in range(1, invalid + 1):
        pipeline.set(f"{prefix}PB-BAD-{number}", SAMPLE_INVALID[(number - 1) % len(SAMPLE_INVALID)])
        written += 1
    pipeline.execute()
    return written
