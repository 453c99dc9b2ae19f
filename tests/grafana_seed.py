"""A known data set for the Grafana tests, and a login role that reads it as Grafana would.

The data set (AS_OF is 2026-11-28 16:30 in Taipei) and what the panels must show for it:

- incidents: 28 Nov (Taipei) two, one without an alertname (one investigating at AS_OF - 2 h, one
  mitigating at AS_OF - 30 min); 27 Nov three, resolved; 26 Nov one with a blank alertname, still
  investigating (stuck). Six in all, two missing an alertname (rate 1/3), one stuck.
- executions: twelve at AS_OF - 2 h, three successful (rate 0.25, source 24h, sample 12); two on
  27 Nov at AS_OF - 30 h, one successful (outside the 24 h window).
- knowledge entries: 28 Nov two (one unvectorized), 27 Nov one.
- playbooks: approved PB-A (1 success, 9 failures), PB-B (5, 5), PB-C (10, 0); draft PB-D (0, 20);
  one invalid record PB-X. Three approved.
- four refreshes, at AS_OF - 3 h, - 2 h, - 1 h and AS_OF, and one complete sync pass.
"""

from __future__ import annotations

import uuid
from contextlib import contextmanager

import sqlalchemy as sa

from flywheel_sync.database import db
from tests.platform import (AS_OF, DAY, HOUR, MINUTE, add_execution, add_executions, add_incident,
                            add_knowledge_entry, add_playbook, refresh)

REFRESHES = (AS_OF - 3 * HOUR, AS_OF - 2 * HOUR, AS_OF - HOUR, AS_OF)


def seed(connection: sa.Connection) -> None:
    add_incident(connection, status="investigating", alertname="HighCPU", created_at=AS_OF - 2 * HOUR)
    add_incident(connection, status="mitigating", alertname=None, created_at=AS_OF - 30 * MINUTE)
    for hours in (20, 21, 22):
        add_incident(connection, alertname="DiskFull", created_at=AS_OF - hours * HOUR)
    add_incident(connection, status="investigating", alertname="  ", created_at=AS_OF - 2 * DAY)

    add_executions(connection, successes=3, failures=9, created_at=AS_OF - 2 * HOUR)
    add_execution(connection, success=True, created_at=AS_OF - 30 * HOUR)
    add_execution(connection, success=False, created_at=AS_OF - 30 * HOUR)

    add_knowledge_entry(connection, created_at=AS_OF - HOUR)
    add_knowledge_entry(connection, vectorized=False, created_at=AS_OF - HOUR)
    add_knowledge_entry(connection, created_at=AS_OF - 20 * HOUR)

    add_playbook(connection, "PB-A", success_count=1, failure_count=9)
    add_playbook(connection, "PB-B", success_count=5, failure_count=5)
    add_playbook(connection, "PB-C", success_count=10, failure_count=0)
    add_playbook(connection, "PB-D", status="draft", success_count=0, failure_count=20)
    add_playbook(connection, "PB-X", valid=False, invalid_reason="success_count is not an integer")

    for as_of in REFRESHES:
        refresh(connection, as_of)
    connection.execute(sa.text(
        "insert into flywheel.sync_log (started_at, finished_at, mode, complete, scanned)"
        " values (now() - interval '2 seconds', now() - interval '1 second', 'pass', true, 5)"))


class ReaderRole:
    """A login role of this test session, member of flywheel_reader; dropped by :meth:`drop`."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.name = f"flywheel_test_reader_{uuid.uuid4().hex[:10]}"
        self.password = uuid.uuid4().hex
        self.admin = db.create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        with self.admin.connect() as connection:
            connection.execute(sa.text(
                f"create role {self.name} login password '{self.password}' in role flywheel_reader"))

    @contextmanager
    def engine(self, database_url: str):
        """An engine logged in as this role on the database."""
        url = db.parse_url(database_url).set(username=self.name, password=self.password)
        engine = db.create_engine(url, poolclass=sa.pool.NullPool)
        try:
            yield engine
        finally:
            engine.dispose()

    def drop(self) -> None:
        with self.admin.connect() as connection:
            connection.execute(sa.text(f"drop role if exists {self.name}"))
        self.admin.dispose()
