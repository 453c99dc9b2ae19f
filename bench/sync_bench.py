"""Benchmark: a sync pass over N playbook keys against the old one-GET-per-key scan, same data, same run.

Writes N sample records under a key prefix of its own (flywheel-bench:<random>:playbook:PB-*), into
the Redis of FLYWHEEL_REDIS_URL (else an embedded one), and syncs them into a database of its own,
flywheel_bench_sync, on the server of FLYWHEEL_DATABASE_URL (else an embedded one). Its keys and its
database are removed at the end. Prints a table (or --json):

  old scan       SCAN (redis-py's default COUNT, 10) + one GET per key + json.loads: what the old
                 service did on every call; the baseline of the ratios
  old, COUNT 1000  the same with larger SCAN pages: the old scan at its best
  first pass     sync into an empty table: every row inserted
  no-change      sync again: nothing changed, only last_seen_at bumped
  1% changed     sync after rewriting 1% of the values

With --oversized it measures memory instead: the peak RSS of `flywheel-sync sync` (a process of its
own) over --keys records, then over the same plus four 50 MB values (issue 10: they took the sync from
87 MB to 338 MB when values were fetched whole; values over the 1 MiB limit are now never fetched).

Usage: .venv/bin/python bench/sync_bench.py [--keys 100000] [--repeat 3] [--json]
       .venv/bin/python bench/sync_bench.py --oversized [--keys 100000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

import redis
import sqlalchemy as sa
from redis.utils import HIREDIS_AVAILABLE

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import measures  # noqa: E402
from flywheel_sync.database import db, migrate  # noqa: E402
from flywheel_sync.local import demo  # noqa: E402
from flywheel_sync.mirror import sync_pass as syncing  # noqa: E402

BENCH_DATABASE = "flywheel_bench_sync"
OVERSIZED_KEYS = 4
OVERSIZED_BYTES = 50 * 1024 * 1024


def old_scan(client: redis.Redis, pattern: str, count: int | None = None) -> int:
    """The old service: one GET per key, parse, count approved (what it did on every call)."""
    approved = 0
    for key in client.scan_iter(match=pattern, count=count):
        record = json.loads(client.get(key))
        approved += record.get("status") == "approved"
    return approved


def timed(action) -> tuple[float, object]:
    started = time.perf_counter()
    outcome = action()
    return time.perf_counter() - started, outcome


def bench_database(server_url: str) -> str:
    admin = db.create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as connection:
        connection.execute(sa.text(f"drop database if exists {BENCH_DATABASE} with (force)"))
        connection.execute(sa.text(f"create database {BENCH_DATABASE}"))
    admin.dispose()
    return db.parse_url(server_url).set(database=BENCH_DATABASE).render_as_string(hide_password=False)


def drop_bench_database(server_url: str) -> None:
    admin = db.create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as connection:
        connection.execute(sa.text(f"drop database if exists {BENCH_DATABASE} with (force)"))
    admin.dispose()


def remove_bench_data(client, prefix: str, engine, server_url: str) -> None:
    """The benchmark's keys and database, gone; its connections closed."""
    for batch in syncing.scan_batches(client, f"{prefix}*"):
        client.delete(*batch)
    client.close()
    engine.dispose()
    drop_bench_database(server_url)


def run(keys: int, repeat: int) -> dict:
    servers = demo.servers(os.environ.get(db.DATABASE_URL_ENV), os.environ.get(db.REDIS_URL_ENV))
    prefix = f"flywheel-bench:{uuid.uuid4().hex[:8]}:playbook:"
    pattern = prefix + "PB-*"
    client = syncing.connect_redis(servers.redis_url)
    engine = db.create_engine(bench_database(servers.database_url))
    rows = []
    try:
        syncing.load_sample_playbooks(client, prefix, keys)
        migrate.upgrade(engine)
        old = [timed(lambda: old_scan(client, pattern))[0] for _ in range(repeat)]
        old_paged = [timed(lambda: old_scan(client, pattern, syncing.SCAN_COUNT))[0] for _ in range(repeat)]
        first, passes, changed = [], [], []
        for _ in range(repeat):
            with engine.begin() as connection:
                connection.execute(sa.text("truncate flywheel.playbooks"))
            first.append(timed(lambda: syncing.sync_pass(engine, client, pattern))[0])
            passes.append(timed(lambda: syncing.sync_pass(engine, client, pattern))[0])
            rewrite_one_percent(client, prefix, keys)
            changed.append(timed(lambda: syncing.sync_pass(engine, client, pattern))[0])
        old_seconds = statistics.median(old)
        for name, samples in (("old scan (GET per key)", old), ("old scan, COUNT 1000", old_paged),
                              ("first pass (all inserted)", first),
                              ("no-change pass", passes), ("1% changed pass", changed)):
            seconds = statistics.median(samples)
            rows.append({"run": name, "seconds": round(seconds, 3), "keys_per_second": round(keys / seconds),
                         "speedup_vs_old": round(old_seconds / seconds, 1)})
    finally:
        remove_bench_data(client, prefix, engine, servers.database_url)
    return {"keys": keys, "repeat": repeat, "cpus": os.cpu_count(), "load_average": os.getloadavg(),
            "redis_parser": "hiredis" if HIREDIS_AVAILABLE else "python",
            "redis": db.mask(servers.redis_url), "database": db.mask(servers.database_url),
            "results": rows}


def oversized_memory(keys: int) -> dict:
    """Peak RSS of one-pass syncs without and with four 50 MB values among the keys."""
    servers = demo.servers(os.environ.get(db.DATABASE_URL_ENV), os.environ.get(db.REDIS_URL_ENV))
    prefix = f"flywheel-bench:{uuid.uuid4().hex[:8]}:playbook:"
    client = syncing.connect_redis(servers.redis_url)
    database_url = bench_database(servers.database_url)
    engine = db.create_engine(database_url)
    environment = {"FLYWHEEL_DATABASE_URL": database_url, "FLYWHEEL_REDIS_URL": servers.redis_url}
    arguments = ["sync", "--json", "--pattern", prefix + "PB-*"]

    def measure(label: str) -> dict:
        return measures.cli_peak_memory(label, arguments, environment)

    try:
        syncing.load_sample_playbooks(client, prefix, keys)
        migrate.upgrade(engine)
        rows = [measure(f"first pass, {keys:,} keys"), measure("no-change pass")]
        for number in range(1, OVERSIZED_KEYS + 1):
            write_oversized(client, f"{prefix}PB-HUGE-{number}")
        rows += [measure(f"pass with {OVERSIZED_KEYS} values of 50 MB added"), measure("no-change pass, with them")]
    finally:
        remove_bench_data(client, prefix, engine, servers.database_url)
    return {"keys": keys, "oversized": f"{OVERSIZED_KEYS} x {OVERSIZED_BYTES:,} bytes", "load_average": os.getloadavg(),
            "redis": db.mask(servers.redis_url), "database": db.mask(servers.database_url), "memory": rows}


def write_oversized(client, key: str) -> None:
    """A valid-looking record of OVERSIZED_BYTES, appended a megabyte at a time: the benchmark itself
    never holds it, so the sync processes it starts (forked from it) do not inherit it either."""
    chunk = b"x" * (1024 * 1024)
    client.set(key, b'{"status": "approved", "pad": "')
    for _ in range(OVERSIZED_BYTES // len(chunk)):
        client.append(key, chunk)
    client.append(key, b'"}')


def rewrite_one_percent(client: redis.Redis, prefix: str, keys: int) -> None:
    pipeline = client.pipeline(transaction=False)
    for number in range(1, keys + 1, 100):
        pipeline.set(f"{prefix}PB-{number}", json.dumps({"id": f"PB-{number}", "status": "approved",
                                                          "success_count": time.time_ns() % 1000}))
    pipeline.execute()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the median is shown")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--oversized", action="store_true",
                        help=f"measure peak memory with {OVERSIZED_KEYS} values of 50 MB among the keys instead")
    options = parser.parse_args()
    if options.oversized:
        report = oversized_memory(options.keys)
        if options.json:
            print(json.dumps(report, indent=2))
            return
        print(f"{report['keys']:,} keys, load {report['load_average'][0]:.2f}; Redis {report['redis']}; "
              f"PostgreSQL {report['database']}")
        for row in report["memory"]:
            print(f"  {row['label']:<40}{row['peak_rss_mb']:>8.0f} MB peak RSS{row['wall_ms']:>9.0f} ms")
        return
    report = run(options.keys, options.repeat)
    if options.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{report['keys']:,} keys, median of {report['repeat']}, {report['cpus']} CPUs, "
          f"load {report['load_average'][0]:.2f}; Redis {report['redis']} ({report['redis_parser']} parser); "
          f"PostgreSQL {report['database']}")
    print(f"{'run':<28}{'seconds':>9}{'keys/s':>11}{'vs old':>9}")
    for row in report["results"]:
        print(f"{row['run']:<28}{row['seconds']:>9.3f}{row['keys_per_second']:>11,}{row['speedup_vs_old']:>8.1f}x")


if __name__ == "__main__":
    main()
