"""Running flywheel.refresh() from Python: one REPEATABLE READ snapshot, the statement timeout around
it, and its errors.

Through psycopg alone (:mod:`flywheel_sync.database.pg`), not SQLAlchemy: `flywheel-sync refresh` runs from
cron every minute, and importing SQLAlchemy would cost it more than the refresh itself (issue 13).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import psycopg

from ..errors import NotMigrated, RefreshBusy, RefreshFailed
from . import pg

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

# SQLSTATEs whose message already says what to do: the lock wait gave up (55P03, from
# flywheel.take_refresh_lock), a standby or read-only transaction (25006, flywheel.require_writable).
LOCK_NOT_AVAILABLE = "55P03"
READ_ONLY = "25006"
CANCELLED = "57014"


@dataclass(frozen=True)
class Step:
    name: str
    rows: int
    ms: float


@dataclass(frozen=True)
class RefreshResult:
    refresh_id: int
    status: str
    computed_at: str
    # computed_at in the zone of the timezone setting, with its offset, as the metrics count days.
    computed_at_local: str | None
    started_at: str
    finished_at: str
    steps: list[Step]
    error: str | None
    raw: dict
    mode: str = "full"
    mode_reason: str | None = None
    drift: dict | None = None
    unusable: dict | None = None

    @property
    def total_ms(self) -> float:
        return sum(step.ms for step in self.steps)


def refresh(database: str | Engine | None, as_of: datetime | None = None, full: bool = False,
            check_schema: bool = True) -> RefreshResult:
    """Run one refresh (incremental unless ``full``); raise RefreshBusy or RefreshFailed when it does not succeed.

    ``database`` is a database URL (None: not given), or an Engine whose URL is used (the refresh
    takes a connection of its own, closed when it ends); :func:`refresh_on` refreshes on a connection
    the caller keeps.
    """
    url = database_url(database)
    with pg.connect(url) as connection:
        return refresh_on(connection, url, as_of, full, check_schema)


def database_url(database: str | Engine | None) -> str | None:
    """The URL of ``database``: as given when a string (or None), the Engine's otherwise."""
    return database if database is None or isinstance(database, str) else _libpq_url(database)


def refresh_on(connection: psycopg.Connection, url: str | None, as_of: datetime | None = None, full: bool = False,
               check_schema: bool = True) -> RefreshResult:
    """:func:`refresh` on an open connection (not in autocommit), left open and idle for the next.

    The worker refreshes every few seconds on one connection: a new one each time cost a login
    (SCRAM's key derivation on both sides) and a backend start per refresh. ``check_schema=False``
    skips the checks for a primary and a current schema (one query), for a caller that checked them at
    its first refresh: a schema downgraded since still fails in one line (NotMigrated), a standby
    with SQLSTATE 25006 (RefreshFailed). ``url`` only names the database in errors.
    """
    try:
        with pg.one_line_failures(url):
            if check_schema:
                require_refreshable(connection, url)
            # Wait for a running refresh before the snapshot, then commit at once (releasing its row
            # lock): a refresh that waited for another reads what that one wrote (REPEATABLE READ
            # fixes the snapshot at the first statement). Only lock_timeout (refresh_lock_wait)
            # bounds the wait: no statement_timeout of the role or database cuts it short.
            connection.execute("set local statement_timeout = 0")
            gave_up = connection.execute("select flywheel.wait_for_refresh_lock(%s)", (full,)).fetchone()[0]
            connection.commit()
            raw, computed_at_local = (gave_up, None) if gave_up else _refresh_in_one_snapshot(connection, as_of, full)
    except psycopg.Error as exc:
        known = _known_failure(exc)
        if known is None:
            raise
        connection.rollback()
        raise known from exc
    result = _result(raw, computed_at_local)
    if result.status != "ok":
        raise _failed(raw)
    return result


def _libpq_url(engine: Engine) -> str:
    from . import db  # the caller holds an Engine: SQLAlchemy is imported already

    return db.libpq_url(engine.url)


# What this module calls: a schema from before release 0004 lacks one of them.
CALLED = ("flywheel.wait_for_refresh_lock(boolean)", "flywheel.refresh(timestamptz, boolean)",
          "flywheel.setting_milliseconds(text)", "flywheel.setting(text)", "flywheel.iso8601(timestamptz, text)")


# The checks of require_refreshable, in one round trip: a standby, schema flywheel, and the first
# function of CALLED the schema lacks (NULL: none). to_regprocedure is NULL, not an error, without the schema.
CHECKS = """
select pg_is_in_recovery(), to_regnamespace('flywheel') is not null,
       (select signature from unnest(%s::text[]) with ordinality as called(signature, position)
        where to_regprocedure(signature) is null order by position limit 1)
"""


def require_refreshable(connection: psycopg.Connection, url: str) -> None:
    """Raise ReadOnlyStandby on a standby, NotMigrated unless schema flywheel has the functions this
    flywheel-sync calls.

    Read from the catalog, which any login may read (flywheel.alembic_version is not granted to the
    flywheel roles), in one round trip: `flywheel-sync refresh` checks at every run."""
    standby, has_schema, missing = connection.execute(CHECKS, (list(CALLED),)).fetchone()
    if standby:
        raise pg.on_standby()
    if not has_schema:
        raise pg.schema_missing(url)
    if missing:
        raise NotMigrated(f"schema flywheel is older than this flywheel-sync (it has no {missing}): "
                          "run `flywheel-sync migrate`")


def _refresh_in_one_snapshot(connection: psycopg.Connection, as_of: datetime | None,
                             full: bool) -> tuple[dict, str | None]:
    """The refresh_log row of the run, and its computed_at in the timezone setting (as the run read it)."""
    # One snapshot for every statement of the refresh, so the rollups and the rows it tracks agree
    # even while the platform writes.
    connection.execute("set transaction isolation level repeatable read")
    # statement_timeout can only bound the call from outside: inside a function it is too late.
    connection.execute(
        "select set_config('statement_timeout', flywheel.setting_milliseconds('refresh_statement_timeout'), true)")
    raw = connection.execute("select flywheel.refresh(%s, full => %s)", (as_of, full)).fetchone()[0]
    computed_at_local = connection.execute(
        "select flywheel.iso8601(%s::timestamptz, flywheel.setting('timezone') #>> '{}')",
        (raw.get("computed_at"),)).fetchone()[0]
    connection.commit()
    return raw, computed_at_local


def _failed(raw: dict) -> RefreshBusy | RefreshFailed:
    """The one-line error of a run that flywheel.refresh() (or the lock wait) recorded as failed."""
    recorded = f"recorded in flywheel.refresh_log, refresh_id {raw['refresh_id']}"
    if raw.get("sqlstate") == LOCK_NOT_AVAILABLE and raw["error"].startswith("another flywheel refresh"):
        return RefreshBusy(f"{raw['error']}; let it finish (see flywheel.refresh_log and pg_stat_activity) "
                           f"or raise refresh_lock_wait ({recorded})")
    if raw.get("sqlstate") == CANCELLED:
        return RefreshFailed(f"refresh failed: {raw['error']} ({recorded})")
    return RefreshFailed(
        f"refresh failed: {raw['error']} (SQLSTATE {raw.get('sqlstate')}; {recorded}). "
        "Run `flywheel-sync check` to compare the source tables with the contract."
    )


def _known_failure(exc: psycopg.Error) -> Exception | None:
    """The one-line error for what the database raised rather than recorded, when a user can act on it."""
    sqlstate = exc.sqlstate
    message = exc.diag.message_primary or str(exc)
    if sqlstate == READ_ONLY:
        return RefreshFailed(message)
    if sqlstate == CANCELLED:
        return RefreshFailed(f"the refresh was cancelled before it started: {message}")
    if sqlstate == "42883":
        return NotMigrated(f"{message}: schema flywheel is older than this flywheel-sync; run `flywheel-sync migrate`")
    return None


def _result(raw: dict, computed_at_local: str | None) -> RefreshResult:
    return RefreshResult(
        refresh_id=raw["refresh_id"],
        status=raw["status"],
        computed_at=raw["computed_at"],
        computed_at_local=computed_at_local,
        started_at=raw["started_at"],
        finished_at=raw["finished_at"],
        steps=[Step(step["step"], step["rows"], float(step["ms"])) for step in raw["steps"]],
        error=raw.get("error"),
        raw=raw,
        mode=raw.get("mode", "full"),
        mode_reason=raw.get("mode_reason"),
        drift=raw.get("drift"),
        unusable=raw.get("unusable"),
    )
