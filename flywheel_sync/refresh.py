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
        # One snapshot for every statement of the refresh, so the rollups and the rows it tracks
        # agree even while the platform writes.
        with db.connect(engine.execution_options(isolation_level="REPEATABLE READ")) as connection:
            db.require_schema(connection)
            # statement_timeout can only bound the call from outside: inside a function it is too late.
            connection.execute(sa.text(
                "select set_config('statement_timeout',"
                " (extract(epoch from (flywheel.setting('refresh_statement_timeout') #>> '{}')::interval) * 1000)"
                "::bigint || 'ms', true)"
            ))
            raw = connection.execute(sa.text("select flywheel.refresh(:as_of, full => :full)"),
                                     {"as_of": as_of, "full": full}).scalar_one()
    except sa.exc.OperationalError as exc:
        if isinstance(exc.orig, psycopg.errors.LockNotAvailable):
            raise RefreshBusy(f"{_first_line(exc)}. {_hint(exc)}") from exc
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


def _first_line(exc: sa.exc.DBAPIError) -> str:
    diag = getattr(exc.orig, "diag", None)
    return (diag.message_primary if diag else None) or str(exc.orig).splitlines()[0]


def _hint(exc: sa.exc.DBAPIError) -> str:
    diag = getattr(exc.orig, "diag", None)
    return (diag.message_hint if diag else None) or ""
