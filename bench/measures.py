"""What the benchmark times: reads, refreshes, the old approach, the floor, contention and memory.

Every function takes an open connection (or URL) and returns durations in milliseconds; the caller
repeats and summarises. Rows the benchmark adds to the platform's tables are remembered by key and
deleted at the end (:class:`Additions`), so the cached data set keeps its size.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis

READS = {
    "read summary_json()": "select flywheel.summary_json()",
    "read flywheel_json()": "select flywheel.flywheel_json()",
    "read prometheus_text()": "select flywheel.prometheus_text()",
    "read select * from flywheel.summary": "select * from flywheel.summary",
}
SOURCE_TABLES = ("incidents", "auto_repair_executions", "knowledge_entries")


def timed(run) -> float:
    started = time.perf_counter()
    run()
    return (time.perf_counter() - started) * 1000


@dataclass
class Additions:
    """Keys of the rows the benchmark inserted, to delete them afterwards."""

    incidents: list[str] = field(default_factory=list)
    executions: list[int] = field(default_factory=list)
    knowledge: list[int] = field(default_factory=list)

    def delete(self, connection: psycopg.Connection) -> None:
        connection.execute("delete from public.incidents where incident_id = any(%s)", (self.incidents,))
        connection.execute("delete from public.auto_repair_executions where id = any(%s)", (self.executions,))
        connection.execute("delete from public.knowledge_entries where id = any(%s)", (self.knowledge,))
        connection.commit()


def refresh_statement(connection: psycopg.Connection, full: bool) -> str:
    """The refresh call: flywheel.refresh(full => ...) where the installed version has it."""
    has_full = connection.execute(
        "select exists (select from pg_proc where oid = any(select oid from pg_proc"
        " where proname = 'refresh' and pronamespace = 'flywheel'::regnamespace) and 'full' = any(proargnames))"
    ).fetchone()[0]
    if not has_full:
        return "select flywheel.refresh()"
    return f"select flywheel.refresh(full => {'true' if full else 'false'})"


def refresh(connection: psycopg.Connection, statement: str) -> dict:
    """One refresh on an autocommit connection, in one REPEATABLE READ snapshot as the CLI runs it."""
    connection.execute("begin isolation level repeatable read")
    result = connection.execute(statement).fetchone()[0]
    connection.execute("commit")
    if result["status"] != "ok":
        raise RuntimeError(f"refresh failed: {result}")
    return result


def minute_of_change(connection: psycopg.Connection, added: Additions) -> None:
    """A realistic minute of the platform: 20 new incidents (one without alertname), 20 executions,
    2 knowledge entries, 5 of the newest active incidents moving on, 1 recent alertname filled in."""
    batch = uuid.uuid4().hex[:8]
    rows = connection.execute(
        "insert into public.incidents (incident_id, alertname, status, notification_type, created_at, updated_at)"
        " select 'BENCH-' || %s || '-' || n, case when n = 1 then null else 'HighCPU' end, 'investigating',"
        " 'TYPE-' || (1 + n %% 4), clock_timestamp(), clock_timestamp() from generate_series(1, 20) as n"
        " returning incident_id", (batch,)).fetchall()
    added.incidents.extend(row[0] for row in rows)
    rows = connection.execute(
        "insert into public.auto_repair_executions (incident_id, playbook_id, success, created_at)"
        " select 'BENCH-' || %s || '-' || n, 'PB-' || n, n %% 3 > 0, clock_timestamp()"
        " from generate_series(1, 20) as n returning id", (batch,)).fetchall()
    added.executions.extend(row[0] for row in rows)
    rows = connection.execute(
        "insert into public.knowledge_entries (title, embedding, created_at)"
        " select 'bench note', null, clock_timestamp() from generate_series(1, 2) returning id").fetchall()
    added.knowledge.extend(row[0] for row in rows)
    connection.execute(
        "update public.incidents set status = case status when 'investigating' then 'mitigating' else 'resolved' end,"
        " updated_at = clock_timestamp()"
        " where incident_id in (select incident_id from public.incidents"
        "  where status in ('investigating', 'mitigating') order by created_at desc limit 5)")
    connection.execute(
        "update public.incidents set alertname = 'DiskFull', updated_at = clock_timestamp()"
        " where incident_id = (select incident_id from public.incidents where alertname is null"
        "  order by created_at desc limit 1)")
    connection.commit()


def floor_pass(connection: psycopg.Connection) -> float:
    """One sequential count(*) pass of each source table, summed: no refresh can read all history faster."""
    total = 0.0
    connection.execute("set enable_indexscan = off; set enable_indexonlyscan = off; set enable_bitmapscan = off")
    for table in SOURCE_TABLES:
        total += timed(lambda: connection.execute(f"select count(*) from public.{table}").fetchone())
    connection.execute("reset enable_indexscan; reset enable_indexonlyscan; reset enable_bitmapscan")
    connection.commit()
    return total


def grouped_floor_pass(connection: psycopg.Connection) -> float:
    """One exact pass of each source table counting its rows per local day, summed: the cheapest
    grouping by day there is (the fixed-offset day key of flywheel.local_day_key_sql, as the full
    refresh groups, in parallel workers, through whichever scan the planner finds cheapest: an
    index-only scan of the created_at index where the table is wide), without the refresh's other
    counts. The day key's range is read first, outside the time."""
    zone, first, last = connection.execute(
        "select flywheel.setting('timezone') #>> '{}',"
        " least((select min(created_at) from public.incidents), (select min(created_at) from public.auto_repair_executions),"
        "       (select min(created_at) from public.knowledge_entries)),"
        " greatest((select max(created_at) from public.incidents), (select max(created_at) from public.auto_repair_executions),"
        "          (select max(created_at) from public.knowledge_entries))").fetchone()
    day_key = connection.execute("select flywheel.local_day_key_sql('created_at', %s, %s, %s)",
                                 (zone, first, last)).fetchone()[0]
    total = 0.0
    for table in SOURCE_TABLES:
        # The volatile column keeps the planner from estimating a group per distinct created_at, which
        # makes it aggregate serially (the full refresh's planner fence).
        total += timed(lambda: connection.execute(
            f"select day_key, count(*) from (select {day_key} as day_key, clock_timestamp() as planner_fence"
            f" from public.{table}) as dated group by day_key").fetchall())
    connection.commit()
    return total


# The old service's thirteen queries (flywheel_stats_service.py), bugs included, as it sent them.
OLD_QUERIES = (
    "select count(*) filter (where success is true), count(*) from public.auto_repair_executions"
    " where created_at >= now() - interval '24 hours'",
    "select count(*) filter (where success is true), count(*) from public.auto_repair_executions"
    " where created_at >= now() - interval '7 days'",
    "select count(*) from public.knowledge_entries where embedding is null",
    "select count(id) from public.knowledge_entries",
    "select count(*) from public.knowledge_entries where created_at >= %(today)s",
    "select count(incident_id) from public.incidents",
    "select count(*) from public.incidents where alertname is null",
    "select count(*) from public.incidents where status = 'investigating' and created_at <= %(stuck)s",
    "select count(*) from public.incidents where notification_type = 'TYPE-4' and status = 'investigating'",
    "select count(*) from public.incidents where created_at >= %(today)s",
    "select count(*) from public.incidents where created_at >= %(hour)s",
    "select count(*) from public.incidents where created_at >= %(today)s"
    " and outcome::text like '%%execution_success%%true%%'",
    "select incident_id, alertname, status, created_at from public.incidents"
    " where status in ('investigating', 'mitigating') order by created_at desc limit 10",
)


def old_sql(connection: psycopg.Connection) -> float:
    bounds = connection.execute(
        "select date_trunc('day', now() at time zone 'Asia/Taipei') at time zone 'Asia/Taipei',"
        " now() - interval '24 hours', now() - interval '1 hour'").fetchone()
    parameters = {"today": bounds[0], "stuck": bounds[1], "hour": bounds[2]}

    def run() -> None:
        for query in OLD_QUERIES:
            connection.execute(query, parameters if "%(" in query else None).fetchall()

    elapsed = timed(run)
    connection.commit()
    return elapsed


class OldRedis:
    """The old service's playbook scan (SCAN + one GET per key) over keys of the benchmark's own."""

    def __init__(self, url: str, playbooks: int) -> None:
        self.client = redis.Redis.from_url(url)
        self.prefix = f"flywheel-bench:{uuid.uuid4().hex[:8]}:playbook:"
        self.playbooks = playbooks

    def write(self) -> None:
        pipe = self.client.pipeline(transaction=False)
        for n in range(1, self.playbooks + 1):
            status = "approved" if n % 10 < 6 else "draft" if n % 10 < 9 else "deprecated"
            pipe.set(f"{self.prefix}PB-{n}", json.dumps(
                {"id": f"PB-{n}", "status": status, "success_count": n % 50, "failure_count": n % 7,
                 "name": f"playbook {n}", "steps": [{"run": "kubectl rollout restart"}]}))
            if n % 5000 == 0:
                pipe.execute()
        pipe.execute()

    def scan(self) -> float:
        def run() -> None:
            count = total = 0
            for key in self.client.scan_iter(match=f"{self.prefix}PB-*", count=200):
                raw = self.client.get(key)
                record = json.loads(raw)
                if record.get("status") == "approved":
                    count += 1
                    total += (record.get("success_count") or 0) + (record.get("failure_count") or 0)

        return timed(run)

    def delete(self) -> None:
        keys = [f"{self.prefix}PB-{n}" for n in range(1, self.playbooks + 1)]
        for start in range(0, len(keys), 5000):
            self.client.delete(*keys[start:start + 5000])
        self.client.close()


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def contention(url: str, seconds: float, refresh_call: str | None, added: Additions) -> dict:
    """A writer inserting incidents and a reader reading the summary, in loops, for ``seconds``;
    with ``refresh_call``, a third connection refreshes back to back meanwhile. Latencies in ms."""
    stop = threading.Event()
    writes: list[float] = []
    reads: list[float] = []
    refreshes: list[float] = []
    prefix = f"BENCH-W{uuid.uuid4().hex[:6]}-"

    def writer() -> None:
        with psycopg.connect(url, autocommit=True) as connection:
            n = 0
            while not stop.is_set():
                n += 1
                key = f"{prefix}{n}"
                writes.append(timed(lambda: connection.execute(
                    "insert into public.incidents (incident_id, alertname, status, created_at, updated_at)"
                    " values (%s, 'HighCPU', 'investigating', clock_timestamp(), clock_timestamp())", (key,))))
                added.incidents.append(key)
                time.sleep(0.005)

    def reader() -> None:
        with psycopg.connect(url, autocommit=True) as connection:
            while not stop.is_set():
                reads.append(timed(lambda: connection.execute("select flywheel.summary_json()").fetchone()))
                time.sleep(0.005)

    def refresher() -> None:
        with psycopg.connect(url, autocommit=True) as connection:
            while not stop.is_set():
                refreshes.append(timed(lambda: refresh(connection, refresh_call)))

    threads = [threading.Thread(target=work) for work in (writer, reader)]
    if refresh_call:
        threads.append(threading.Thread(target=refresher))
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return {"writes": len(writes), "write_p50": percentile(writes, 0.5), "write_p99": percentile(writes, 0.99),
            "reads": len(reads), "read_p50": percentile(reads, 0.5), "read_p99": percentile(reads, 0.99),
            "refreshes": len(refreshes), "refresh_p50": percentile(refreshes, 0.5)}


def cli_peak_memory(label: str, arguments: list[str], environment: dict[str, str]) -> dict:
    """Peak resident memory of a `flywheel-sync` command as a child process (its own rusage, via wait4)."""
    command = [str(Path(sys.executable).with_name("flywheel-sync")), *arguments]
    started = time.perf_counter()
    child = subprocess.Popen(command, env={**os.environ, **environment}, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = (time.perf_counter() - started) * 1000
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"flywheel-sync {' '.join(arguments)} failed: {child.stderr.read().decode()}")
    # ru_maxrss is in kilobytes on Linux.
    return {"label": label, "command": " ".join(arguments), "peak_rss_mb": usage.ru_maxrss / 1024,
            "wall_ms": elapsed}


def cli_refresh_memory(database_url: str) -> dict:
    """`flywheel-sync refresh --full`: the refresh runs in the server, the CLI holds one JSON row."""
    return cli_peak_memory("refresh --full", ["refresh", "--json", "--full"], {"FLYWHEEL_DATABASE_URL": database_url})


def cli_sync_memory(database_url: str, redis_url: str, pattern: str) -> list[dict]:
    """`flywheel-sync sync` over the keys of pattern: a first pass (every key inserted), then one with no change."""
    environment = {"FLYWHEEL_DATABASE_URL": database_url, "FLYWHEEL_REDIS_URL": redis_url}
    arguments = ["sync", "--json", "--pattern", pattern]
    return [cli_peak_memory(label, arguments, environment)
            for label in ("sync, first pass (every key inserted)", "sync, pass with nothing changed")]
