"""Freshness (issue 13): how old flywheel.summary is under the sync worker's refresh, and what it costs.

Runs `flywheel-sync sync --follow --refresh-every SECONDS --refresh-after-change` as a process of its
own against a scale's benchmark data set (bench/dataset.py) and the scale's playbooks in Redis (a Redis
database of its own, database 7 of the benchmark's Redis), waits for its first reconciliation, then for
``--changes`` changes at random moments (gaps drawn uniformly from 0.5 to 2 x the refresh interval),
alternately:

- **source**: one incident inserted and committed (autocommit) into public.incidents;
- **redis**: one new approved playbook SET in Redis;

and measures each change's staleness, commit (or SET) returned -> first seen in ``flywheel.summary``
(``incidents_total`` / ``playbook_count``), by polling the view every 20 ms on a connection of its own.
Over the same window, as shares of one core: the worker process's CPU (user + system from
/proc/<pid>/stat, its threads included), the CPU of its server backends (the same, of every backend
of the database but the benchmark's own two: the server runs on this machine), and the server's
wall time spent refreshing (the durations of the window's refresh_log rows, summed, over the
window: on a loaded machine this counts the time a refresh waited for a core too). The worker reconciles every
``--reconcile-every`` seconds (300, its default: the window starts after the first pass and holds
none, so the CPU shares are those of refreshing and applying events); the last column is the wall
time of that first pass over the scale's playbooks (no change in it from the second run on).

Afterwards: the incidents and playbooks it added are deleted, the mirror is left holding the scale's
sample playbooks under playbook:PB-*, and a full refresh restores the metrics.

    .venv/bin/python bench/freshness.py --scale S --postgres debian15
    .venv/bin/python bench/freshness.py --scale L --postgres embedded --changes 60 --json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid

import psycopg
import redis

import dataset
import measures
from flywheel_sync.database import db
from flywheel_sync.local import generate
from flywheel_sync.mirror import sync_pass as syncing

REDIS_DATABASE = 7
POLL_SECONDS = 0.02
TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, its threads included (fields 14 and 15 of /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class Watcher:
    """Polls flywheel.summary and records when each awaited value is first reached."""

    def __init__(self, libpq: str) -> None:
        self.connection = psycopg.connect(libpq, autocommit=True)
        self.awaited: list[tuple[str, int, float]] = []  # (column, value, committed at)
        self.seen: list[tuple[str, float]] = []  # (column, staleness seconds)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def current(self) -> tuple[int, int]:
        return self.connection.execute("select incidents_total, playbook_count from flywheel.summary").fetchone()

    def await_value(self, column: str, value: int, committed_at: float) -> None:
        with self.lock:
            self.awaited.append((column, value, committed_at))

    def _run(self) -> None:
        while not self.stop.is_set():
            incidents, playbooks = self.current()
            seen_at = time.monotonic()
            values = {"incidents_total": incidents, "playbook_count": playbooks}
            with self.lock:
                still = []
                for column, value, committed_at in self.awaited:
                    if values[column] >= value:
                        self.seen.append((column, seen_at - committed_at))
                    else:
                        still.append((column, value, committed_at))
                self.awaited = still
            self.stop.wait(POLL_SECONDS)

    def pending(self) -> int:
        with self.lock:
            return len(self.awaited)


def worker_backends(writer: psycopg.Connection, watcher: Watcher) -> set[int]:
    """The server processes of the worker's connections: every client backend of the database but the benchmark's."""
    return {pid for (pid,) in writer.execute(
        "select pid from pg_stat_activity where datname = current_database() and backend_type = 'client backend'"
        " and pid not in (pg_backend_pid(), %s)", (watcher.connection.info.backend_pid,))}


def start_worker(database_url: str, redis_url: str, refresh_every: float, reconcile_every: float,
                 log_path: str) -> subprocess.Popen:
    command = [os.path.join(os.path.dirname(sys.executable), "flywheel-sync"), "sync", "--follow",
               "--refresh-every", str(refresh_every), "--refresh-after-change",
               "--reconcile-every", str(reconcile_every), "--log-format", "json"]
    environment = {**os.environ, db.DATABASE_URL_ENV: database_url, db.REDIS_URL_ENV: redis_url}
    return subprocess.Popen(command, env=environment, stderr=open(log_path, "w"), stdout=subprocess.DEVNULL)


def wait_for_event(log_path: str, event: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(log_path) as log:
            if any(json.loads(line).get("event") == event for line in log if line.strip()):
                return
        time.sleep(0.2)
    raise SystemExit(f"the worker did not log {event} within {timeout:.0f} s; see {log_path}")


def measure(url: str, redis_server_url: str, scale: str, changes: int, refresh_every: float,
            reconcile_every: float, seed: int, say) -> dict:
    size = generate.SIZES[scale]
    redis_url = redis_server_url.rsplit("/", 1)[0] + f"/{REDIS_DATABASE}"
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    syncing.load_sample_playbooks(client, "playbook:", size.playbooks)
    libpq = dataset.libpq(url)
    writer = psycopg.connect(libpq, autocommit=True)
    log_path = os.path.join(dataset.CACHE, f"freshness-{scale}.log")
    run = uuid.uuid4().hex[:8]
    worker = start_worker(url, redis_url, refresh_every, reconcile_every, log_path)
    watcher = Watcher(libpq)
    random_gaps = random.Random(seed)
    try:
        wait_for_event(log_path, "reconciled", timeout=600)
        say(f"worker reconciled {size.playbooks:,} playbooks; {changes} changes at random moments")
        # Let the first refresh after the pass (which rewrote the mirror) land before the window.
        time.sleep(2 * refresh_every)
        incidents, playbooks = watcher.current()
        watcher.thread.start()
        backends = worker_backends(writer, watcher)
        backend_cpu_before = sum(process_cpu_seconds(pid) for pid in backends)
        cpu_before, wall_before = process_cpu_seconds(worker.pid), time.monotonic()
        window_start = writer.execute("select clock_timestamp()").fetchone()[0]
        for number in range(changes):
            time.sleep(random_gaps.uniform(0.5, 2 * refresh_every))
            if number % 2 == 0:
                writer.execute("insert into public.incidents (incident_id, alertname, status, notification_type,"
                               " created_at, updated_at) values (%s, 'HighCPU', 'investigating', 'TYPE-1',"
                               " clock_timestamp(), clock_timestamp())", (f"FRESH-{run}-{number}",))
                incidents += 1
                watcher.await_value("incidents_total", incidents, time.monotonic())
            else:
                client.set(f"playbook:PB-FRESH-{run}-{number}",
                           json.dumps({"status": "approved", "success_count": 1, "failure_count": 0}))
                playbooks += 1
                watcher.await_value("playbook_count", playbooks, time.monotonic())
        deadline = time.monotonic() + 30
        while watcher.pending() and time.monotonic() < deadline:
            time.sleep(0.05)
        cpu_after, wall_after = process_cpu_seconds(worker.pid), time.monotonic()
        # A backend started during the window (a pool's new connection) spent all its CPU in it.
        backends |= worker_backends(writer, watcher)
        backend_cpu_after = sum(process_cpu_seconds(pid) for pid in backends if os.path.exists(f"/proc/{pid}"))
        window_end = writer.execute("select clock_timestamp()").fetchone()[0]
        refreshes = writer.execute(
            "select count(*), coalesce(sum(extract(epoch from finished_at - started_at)), 0),"
            " percentile_cont(0.5) within group (order by extract(epoch from finished_at - started_at)),"
            " count(*) filter (where status <> 'ok')"
            " from flywheel.refresh_log where started_at between %s and %s", (window_start, window_end)).fetchone()
    finally:
        watcher.stop.set()
        worker.terminate()
        worker.wait(120)
        if watcher.thread.is_alive():
            watcher.thread.join(5)
        watcher.connection.close()
    wall = wall_after - wall_before
    with open(log_path) as log:
        first_pass = next(line for line in map(json.loads, log) if line["event"] == "reconciled")
    by_kind = {kind: [seconds for column, seconds in watcher.seen if column == column_name]
               for kind, column_name in (("source", "incidents_total"), ("redis", "playbook_count"))}
    say("cleaning up: the added rows and keys, then a full refresh")
    writer.execute("delete from public.incidents where incident_id like %s", (f"FRESH-{run}-%",))
    writer.execute("delete from flywheel.playbooks where playbook_id like %s", (f"PB-FRESH-{run}-%",))
    for key in client.scan_iter(match=f"playbook:PB-FRESH-{run}-*"):
        client.delete(key)
    client.close()
    measures.refresh(writer, "select flywheel.refresh(full => true)")
    writer.close()
    count, refresh_seconds, refresh_median, failed = refreshes
    staleness = {kind: {"n": len(values), "p50": statistics.median(values) if values else None,
                        "p95": measures.percentile(values, 0.95), "max": max(values) if values else None}
                 for kind, values in by_kind.items()}
    every = [seconds for values in by_kind.values() for seconds in values]
    staleness["all"] = {"n": len(every), "p50": statistics.median(every), "p95": measures.percentile(every, 0.95),
                        "max": max(every)}
    return {"scale": scale, "refresh_every": refresh_every, "reconcile_every": reconcile_every,
            "window_seconds": round(wall, 1), "changes": changes, "unseen": changes - len(every),
            "staleness": staleness, "refreshes": count, "refresh_failed": failed,
            "refresh_ms_median": round(float(refresh_median or 0) * 1000, 1),
            "server_refresh_share": float(refresh_seconds) / wall,
            "process_cpu_share": (cpu_after - cpu_before) / wall,
            "backend_cpu_share": (backend_cpu_after - backend_cpu_before) / wall, "backends": len(backends),
            "first_pass_seconds": first_pass["seconds"], "first_pass_changed": first_pass["updated"],
            "load": os.getloadavg(), "worker_log": log_path}


def render(results: list[dict]) -> str:
    header = ("| server | scale | every | source p50 / p95 / max s | redis p50 / p95 / max s | all p95 s "
              "| refreshes | refresh ms p50 | refresh wall share | worker CPU | its backends' CPU | load | first pass s |")
    lines = [header, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"]

    def triple(values: dict) -> str:
        return " / ".join(f"{values[key]:.2f}" if values[key] is not None else "-" for key in ("p50", "p95", "max"))

    for row in results:
        lines.append(
            f"| {row['postgres']} | {row['scale']} | {row['refresh_every']:g} s | {triple(row['staleness']['source'])} "
            f"| {triple(row['staleness']['redis'])} | {row['staleness']['all']['p95']:.2f} | {row['refreshes']} "
            f"| {row['refresh_ms_median']:.1f} | {100 * row['server_refresh_share']:.1f}% "
            f"| {100 * row['process_cpu_share']:.1f}% | {100 * row['backend_cpu_share']:.1f}% "
            f"| {' '.join(f'{value:.1f}' for value in row['load'])} | {row['first_pass_seconds']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=["S", "M", "L"], action="append", help="repeatable; default S")
    parser.add_argument("--postgres", choices=dataset.POSTGRES_KINDS, action="append",
                        help="server (repeatable; default embedded)")
    parser.add_argument("--changes", type=int, default=40, help="changes per run, half to each source (default 40)")
    parser.add_argument("--refresh-every", type=float, action="append",
                        help="the worker's --refresh-every (repeatable; default 2)")
    parser.add_argument("--reconcile-every", type=float, default=300.0,
                        help="the worker's --reconcile-every (default 300)")
    parser.add_argument("--state", choices=dataset.STATES, default="realistic",
                        help="platform state of the data set (default realistic: the last day's arrivals at a "
                             "rate that does not grow with history)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    options = parser.parse_args()

    def say(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    results = []
    for postgres in options.postgres or ["embedded"]:
        servers = dataset.servers(postgres)
        for scale in options.scale or ["S"]:
            say(f"{postgres}, scale {scale}")
            url = dataset.ensure(servers.postgres_url, scale, say, state=options.state)
            for refresh_every in options.refresh_every or [2.0]:
                result = measure(url, servers.redis_url, scale, options.changes, refresh_every,
                                 options.reconcile_every, options.seed, say)
                results.append({"postgres": postgres, **result})
                say(json.dumps(result["staleness"]["all"]))
    if options.json:
        print(json.dumps({"freshness": results, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
                         indent=2, default=str))
    else:
        print(render(results))


if __name__ == "__main__":
    main()
