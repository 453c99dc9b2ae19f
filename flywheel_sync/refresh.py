"""Running flywheel.refresh() from Python: one REPEATABLE READ snapshot, the statement timeout around
it, and its errors."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg.errors
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from . import db
from .errors import RefreshBusy, RefreshFailed

# flywheel.refresh()'s advisory lock: 'flyw' and 1 (refresh_v02.sql).
REFRESH_LOCK = "x'666c7977'::integer, 1"


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
    started_at: str
    finished_at: str
    steps: list[Step]
    error: str | None
    raw: dict
    mode: str = "full"
    mode_reason: str | None = None
    drift: dict | None = None

    @property
    def total_ms(self) -> float:
        return sum(step.ms for step in self.steps)


def refresh(engine: Engine, as_of: datetime | None = None, full: bool = False) -> RefreshResult:
    """Run one refresh (incremental unless ``full``); raise RefreshBusy or RefreshFailed when it does not succeed."""
    try:
        with db.session(engine) as connection:
            db.require_primary(connection)
            db.require_schema(connection)
            # The refresh's own advisory lock, taken before its snapshot: a refresh that waited for
            # another then reads what that one wrote (REPEATABLE READ fixes the snapshot at the first
            # statement, so a lock taken inside the snapshot would be taken too late).
            connection.execute(sa.text(
                "select set_config('lock_timeout',"
                " (extract(epoch from (flywheel.setting('refresh_lock_wait') #>> '{}')::interval) * 1000)"
                "::bigint || 'ms', false)"
            ))
            connection.execute(sa.text(f"select pg_advisory_lock({REFRESH_LOCK})"))
            connection.commit()
            try:
                raw = _refresh_in_one_snapshot(connection, as_of, full)
            finally:
                connection.rollback()
                connection.execute(sa.text(f"select pg_advisory_unlock({REFRESH_LOCK})"))
                connection.execute(sa.text("reset lock_timeout"))
                connection.commit()
    except sa.exc.OperationalError as exc:
        if isinstance(exc.orig, psycopg.errors.LockNotAvailable):
            raise RefreshBusy(
                "another flywheel refresh is running and did not finish within the refresh_lock_wait setting; "
                "let it finish (see flywheel.refresh_log and pg_stat_activity) or raise refresh_lock_wait"
            ) from exc
        if isinstance(exc.orig, psycopg.errors.QueryCanceled):
            raise RefreshFailed(
                "the refresh was cancelled by refresh_statement_timeout; raise that setting "
                "(flywheel-sync settings set refresh_statement_timeout '30 minutes') or check the source indexes "
                "(flywheel-sync check)"
            ) from exc
        raise
    result = _result(raw)
    if result.status != "ok":
        raise RefreshFailed(
            f"refresh failed: {result.error} (SQLSTATE {raw.get('sqlstate')}; recorded in flywheel.refresh_log, "
            f"refresh_id {result.refresh_id}). Run `flywheel-sync check` to compare the source tables with the contract."
        )
    return result


def _refresh_in_one_snapshot(connection: sa.Connection, as_of: datetime | None, full: bool) -> dict:
    # One snapshot for every statement of the refresh, so the rollups and the rows it tracks agree
    # even while the platform writes.
    connection.execution_options(isolation_level="REPEATABLE READ")
    with connection.begin():
        # statement_timeout can only bound the call from outside: inside a function it is too late.
        connection.execute(sa.text(
            "select set_config('statement_timeout',"
            " (extract(epoch from (flywheel.setting('refresh_statement_timeout') #>> '{}')::interval) * 1000)"
            "::bigint || 'ms', true)"
        ))
        return connection.execute(sa.text("select flywheel.refresh(:as_of, full => :full)"),
                                  {"as_of": as_of, "full": full}).scalar_one()


def _result(raw: dict) -> RefreshResult:
    return RefreshResult(
        refresh_id=raw["refresh_id"],
        status=raw["status"],
        computed_at=raw["computed_at"],
        started_at=raw["started_at"],
        finished_at=raw["finished_at"],
        steps=[Step(step["step"], step["rows"], float(step["ms"])) for step in raw["steps"]],
        error=raw.get("error"),
        raw=raw,
        mode=raw.get("mode", "full"),
        mode_reason=raw.get("mode_reason"),
        drift=raw.get("drift"),
    )

