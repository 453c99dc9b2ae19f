"""Builders for the rows a test needs: the platform's tables and the playbook mirror.

Each builder inserts one row with sensible defaults and takes any column as a keyword, so a test
states only what matters to it: ``add_incident(c, status="investigating", created_at=AS_OF - DAY)``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import sqlalchemy as sa

TAIPEI = ZoneInfo("Asia/Taipei")
# A fixed clock for the metrics: 16:30 in Taipei, 08:30 UTC.
AS_OF = datetime(2026, 11, 28, 16, 30, tzinfo=TAIPEI)
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
TAIPEI_MIDNIGHT = datetime(2026, 11, 28, 0, 0, tzinfo=TAIPEI)

_ids = itertools.count(1)


def add_incident(connection: sa.Connection, **columns) -> str:
    row = {"incident_id": f"INC-{next(_ids)}", "alertname": "HighCPU", "status": "resolved",
           "notification_type": "TYPE-1", "outcome": None, "created_at": AS_OF - 3 * DAY}
    row.update(columns)
    row.setdefault("updated_at", row["created_at"])
    if row["outcome"] is not None and not isinstance(row["outcome"], str):
        row["outcome"] = json.dumps(row["outcome"])
    connection.execute(sa.text(
        "insert into incidents (incident_id, alertname, status, notification_type, outcome, created_at, updated_at)"
        " values (:incident_id, :alertname, :status, :notification_type, cast(:outcome as jsonb), :created_at, :updated_at)"
    ), row)
    return row["incident_id"]


def add_execution(connection: sa.Connection, **columns) -> None:
    row = {"incident_id": None, "playbook_id": "PB-1", "success": True, "created_at": AS_OF - HOUR}
    row.update(columns)
    connection.execute(sa.text(
        "insert into auto_repair_executions (incident_id, playbook_id, success, created_at)"
        " values (:incident_id, :playbook_id, :success, :created_at)"
    ), row)


def add_executions(connection: sa.Connection, successes: int, failures: int, created_at: datetime) -> None:
    for success in [True] * successes + [False] * failures:
        add_execution(connection, success=success, created_at=created_at)


def add_knowledge_entry(connection: sa.Connection, vectorized: bool = True, **columns) -> None:
    row = {"title": "note", "created_at": AS_OF - DAY, "embedding": [0.1, 0.2] if vectorized else None}
    row.update(columns)
    connection.execute(sa.text(
        "insert into knowledge_entries (title, embedding, created_at) values (:title, :embedding, :created_at)"
    ), row)


def add_playbook(connection: sa.Connection, playbook_id: str | None = None, status: str | None = "approved",
                 success_count: int | None = 0, failure_count: int | None = 0, valid: bool = True,
                 invalid_reason: str | None = None) -> None:
    """A row of flywheel.playbooks as the sync worker would write it."""
    playbook_id = playbook_id or f"PB-{next(_ids)}"
    document = {"id": playbook_id, "status": status, "success_count": success_count, "failure_count": failure_count}
    raw = json.dumps(document)
    connection.execute(sa.text(
        "insert into flywheel.playbooks (redis_key, playbook_id, status, success_count, failure_count, document,"
        " valid, invalid_reason, content_hash)"
        " values (:key, :playbook_id, :status, :success_count, :failure_count, cast(:document as jsonb),"
        " :valid, :invalid_reason, :hash)"
    ), {"key": f"playbook:{playbook_id}".encode(), "playbook_id": playbook_id,
        "status": status if valid else None, "success_count": success_count if valid else None,
        "failure_count": failure_count if valid else None, "document": raw, "valid": valid,
        "invalid_reason": None if valid else (invalid_reason or "invalid"),
        "hash": hashlib.sha1(raw.encode()).digest()})


def set_setting(connection: sa.Connection, key: str, value: object) -> None:
    """Set one setting to a Python value (stored as JSON), as a plain UPDATE would."""
    connection.execute(sa.text("update flywheel.settings set value = cast(:value as jsonb) where key = :key"),
                       {"key": key, "value": json.dumps(value)})


def refresh(connection: sa.Connection, as_of: datetime = AS_OF) -> dict:
    """Run flywheel.refresh(as_of) and return the Summary JSON it produced."""
    result = connection.execute(sa.text("select flywheel.refresh(:as_of)"), {"as_of": as_of}).scalar_one()
    assert result["status"] == "ok", result
    return connection.execute(sa.text("select flywheel.summary_json()")).scalar_one()


def summary_row(connection: sa.Connection) -> sa.Row:
    return connection.execute(sa.text("select * from flywheel.summary")).one()


def utc(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc)


def playbook_value(status="approved", success_count=0, failure_count=0, **fields) -> bytes:
    """A Redis playbook record as the platform writes it."""
    return json.dumps({"status": status, "success_count": success_count, "failure_count": failure_count,
                       **fields}).encode()


def mirror(connection: sa.Connection) -> dict[bytes, sa.Row]:
    """flywheel.playbooks by Redis key."""
    rows = connection.execute(sa.text("select * from flywheel.playbooks"))
    return {bytes(row.redis_key): row for row in rows}


def mirror_of(engine: sa.Engine) -> dict[bytes, sa.Row]:
    """flywheel.playbooks by Redis key, read in a connection of its own."""
    with engine.connect() as connection:
        return mirror(connection)


def sync_log(connection: sa.Connection) -> list[sa.Row]:
    return connection.execute(sa.text("select * from flywheel.sync_log order by sync_id")).all()


def eventually(check, seconds: float = 10.0):
    deadline = time.monotonic() + seconds
    while True:
        outcome = check()
        if outcome or time.monotonic() > deadline:
            return outcome
        time.sleep(0.05)
