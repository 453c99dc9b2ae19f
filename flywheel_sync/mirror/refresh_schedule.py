"""When the sync worker refreshes the metrics: `sync --follow --refresh-every SECONDS`.

Every ``every`` seconds (measured from the start of the previous refresh, so the cadence holds
while refreshes take time; a refresh slower than half the interval is followed by as long a pause,
so the worker keeps a backend busy at most half the time), and at once after the mirror changed
when ``after_change``. The worker
calls :meth:`RefreshSchedule.run_if_due` from its loop; one refresh runs at a time, in the worker's
thread, so a SIGTERM lets the refresh in hand finish.

- **Another refresher holds the lock** (cron, pg_cron, `flywheel-sync refresh --full`): the refresh
  is skipped, not queued behind it and not recorded as failed; the next is tried one interval later.
  Seen in pg_locks: the holder of flywheel.refresh_lock's row lock holds ROW EXCLUSIVE on the table.
- **A refresh fails** (recorded in refresh_log): logged, and the next tries after a backoff that
  doubles from ``every`` up to ``FAILURE_BACKOFF_CAP`` seconds, so a failing (nightly full) refresh
  is retried without taking the database's time every few seconds.
- **A lost connection** is not caught here: it ends the worker's pass, which reconnects with backoff.

The refreshes run on one psycopg connection the schedule keeps between them (a login per refresh
cost SCRAM's key derivation and a backend start every few seconds), opened at the first refresh and
again after a failure that may have broken it; :meth:`RefreshSchedule.close` closes it.

Log lines: ``refreshed`` for a full refresh, a refresh after a change, and one slower than half
its interval (which the next waits for); every ``summary_every`` seconds one ``refresh_summary`` line with the counts and times of
the interval refreshes since the last (at a 2-second cadence a line per refresh would be 43,200 a day).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import psycopg
from sqlalchemy.engine import Engine

from ..database import pg
from ..database import refresh as refreshing
from ..errors import RefreshBusy, RefreshFailed

FAILURE_BACKOFF_CAP = 60.0
SUMMARY_SECONDS = 60.0

# Another session holding (or waiting for) the refresh's row lock holds ROW EXCLUSIVE on the table.
# pg_locks lists the whole cluster's locks, and a relation's OID is unique only in its database: a
# database cloned from another (CREATE DATABASE ... TEMPLATE) has the same OIDs, so without the
# database the refresher of a staging copy would look like this database's.
OTHER_REFRESHER = """
select a.pid, coalesce(nullif(a.application_name, ''), 'no application name'), a.usename
from pg_locks l join pg_stat_activity a using (pid)
where l.locktype = 'relation' and l.relation = to_regclass('flywheel.refresh_lock')
  and l.database = (select oid from pg_database where datname = current_database())
  and l.mode = 'RowExclusiveLock' and l.granted and l.pid <> pg_backend_pid()
order by a.xact_start
limit 1
"""


@dataclass
class Counts:
    """What the refreshes did since the last summary line."""

    refreshes: int = 0
    full: int = 0
    skipped: int = 0
    failed: int = 0
    milliseconds: list[float] = field(default_factory=list)
    computed_at: str | None = None


class RefreshSchedule:
    """The worker's refreshes: when the next is due, what the last ones did, what to log.

    ``every`` None with ``after_change`` False never refreshes (the worker leaves it to cron);
    ``clock`` is injectable so a test can drive the schedule step by step."""

    def __init__(self, every: float | None, after_change: bool, log, summary_every: float = SUMMARY_SECONDS,
                 clock=time.monotonic) -> None:
        self.every, self.after_change, self.log, self.clock = every, after_change, log, clock
        self.summary_every = summary_every
        self.next_due = clock() if every else float("inf")
        self.next_summary = clock() + summary_every
        self.failures = 0
        self.busy_since: float | None = None
        self.schema_checked = False
        self.change_pending = False
        self.counts = Counts()
        self.total = 0
        self.connection: psycopg.Connection | None = None

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def changed(self) -> None:
        """The mirror changed: with ``after_change``, refresh at the next call (unless backing off)."""
        if self.after_change and not self.failures:
            self.change_pending = True
            self.next_due = min(self.next_due, self.clock())

    def seconds_until_due(self) -> float:
        return max(0.0, self.next_due - self.clock())

    def run_if_due(self, engine: Engine) -> bool:
        """Refresh when due; True when a refresh succeeded. Connection failures propagate."""
        if self.clock() < self.next_due:
            self._maybe_summarise()
            return False
        reason = "after_change" if self.change_pending else "interval"
        self.change_pending = False
        try:
            refreshed = self._refresh(engine, reason, self.clock())
        except BaseException:
            self.close()
            raise
        self._maybe_summarise()
        return refreshed

    def _refresh(self, engine: Engine, reason: str, started: float) -> bool:
        url = refreshing.database_url(engine)
        if self.connection is None:
            self.connection = pg.connect(url)
        try:
            with pg.one_line_failures(url):
                holder = other_refresher(self.connection)
            if holder is not None:
                self._skip(holder, started)
                return False
            result = refreshing.refresh_on(self.connection, url, check_schema=not self.schema_checked)
        except RefreshBusy as exc:
            # Another refresher took the lock between the look above and this refresh: name it too.
            self._skip(other_refresher(self.connection) or str(exc).split(";", 1)[0], started)
            return False
        except RefreshFailed as exc:
            # A fresh connection for the next try: this failure may have been the connection's.
            self.close()
            self.failures += 1
            self.counts.failed += 1
            delay = min(FAILURE_BACKOFF_CAP, (self.every or 1.0) * 2 ** (self.failures - 1))
            self.next_due = self.clock() + delay
            self.log("refresh_failed", reason=reason, error=str(exc.message).splitlines()[0],
                     failures_in_a_row=self.failures, retry_in_seconds=delay)
            return False
        self.schema_checked = True
        elapsed = self.clock() - started
        if self.busy_since is not None:
            self.log("refresh_resumed", skipped_seconds=round(started - self.busy_since, 1))
            self.busy_since = None
        if self.failures:
            self.log("refresh_recovered", failures_in_a_row=self.failures)
            self.failures = 0
        self.total += 1
        # A routine refresh slower than half the interval waits as long as it took before the next:
        # the worker never keeps a backend busy more than half the time, however slow routine runs
        # get. The nightly full refresh is not followed by such a pause.
        pause = elapsed if result.mode != "full" else 0.0
        self.next_due = max(started + self.every, started + elapsed + pause) if self.every else float("inf")
        self.counts.refreshes += 1
        self.counts.full += result.mode == "full"
        self.counts.milliseconds.append(result.total_ms)
        self.counts.computed_at = result.computed_at
        if result.mode == "full" or reason != "interval" or (self.every and elapsed > self.every / 2):
            self.log("refreshed", reason=reason, mode=result.mode, mode_reason=result.mode_reason,
                     refresh_id=result.refresh_id, ms=result.total_ms, seconds=round(elapsed, 3))
        return True

    def _skip(self, holder: str, started: float) -> None:
        self.counts.skipped += 1
        if self.busy_since is None:
            self.busy_since = started
            self.log("refresh_skipped", why="another refresher holds the refresh lock", holder=holder,
                     retry_in_seconds=self.every)
        self.next_due = self.clock() + (self.every or 1.0)

    def _maybe_summarise(self) -> None:
        if self.clock() < self.next_summary:
            return
        self.next_summary = self.clock() + self.summary_every
        counts, self.counts = self.counts, Counts()
        if not (counts.refreshes or counts.skipped or counts.failed):
            return
        times = counts.milliseconds
        self.log("refresh_summary", seconds=self.summary_every, refreshes=counts.refreshes, full=counts.full,
                 skipped=counts.skipped, failed=counts.failed,
                 ms_median=round(statistics.median(times), 1) if times else None,
                 ms_max=max(times) if times else None, computed_at=counts.computed_at)


def other_refresher(connection: psycopg.Connection) -> str | None:
    """The session of another refresher holding (or waiting for) the refresh lock, in words; None if none."""
    row = connection.execute(OTHER_REFRESHER).fetchone()
    # pg_stat_activity is read once per transaction: end it, so the next look sees the present.
    connection.commit()
    if row is None:
        return None
    pid, application, login = row
    return f"backend pid {pid}, login {login or 'unknown'}, {application}"
