"""The flywheel-sync benchmark: one table, one run, every number beside its baseline.

Builds (or reuses) the data set of a scale with the project's generator, then measures on it, in this
order: the floor (one sequential count(*) pass per source table), a full refresh, a routine refresh
after a realistic minute of change, the reads (the JSON and Prometheus functions, and every panel of
the Grafana dashboard over its default 7 days, on two years of history in tiers at one refresh every 5 s), the old
approach (its 13 queries and its GET per Redis key), a writer and a reader with and without
refreshes running, and the peak memory of the CLI: a full refresh, and two sync passes over the
scale's playbook keys (the first inserts them all, the second finds nothing changed) into a database
of their own. Prints medians and min-max of the repetitions, with ratios; --json prints the same as
JSON.

    make bench SCALE=M
    .venv/bin/python bench/run.py --scale S --repeat 7 --json > bench-S.json
    .venv/bin/python bench/run.py --scale M --postgres debian15 --layout partitioned

--postgres debian15 runs on the machine's Debian PostgreSQL 15 with its default settings (JIT on),
a cluster the benchmark starts itself (bench/dataset.py); bench/deployments.py compares the two
servers, both layouts and the stuck platform on the refresh alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from datetime import timedelta

import psycopg
import sqlalchemy as sa

import dataset
import grafana_panels
import measures
import sync_bench
from flywheel_sync import db, generate, migrate


@dataclass
class Row:
    name: str
    samples: list[float]
    baseline: str | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


def repeat(times: int, run) -> list[float]:
    return [run() for _ in range(times)]


def measure(url: str, redis_url: str, scale: str, repeats: int, contention_seconds: float, say) -> dict:
    size = generate.SIZES[scale]
    libpq = dataset.libpq(url)
    rows: list[Row] = []
    added = measures.Additions()
    old_redis = measures.OldRedis(redis_url, size.playbooks)
    with psycopg.connect(libpq) as connection, psycopg.connect(libpq, autocommit=True) as refresher:
        full_call = measures.refresh_statement(refresher, full=True)
        routine_call = measures.refresh_statement(refresher, full=False)
        try:
            say("floor")
            rows.append(Row("floor: count(*) seq pass per table, summed",
                            repeat(repeats, lambda: measures.floor_pass(connection))))
            say("full refresh")
            rows.append(Row("full refresh", repeat(repeats, lambda: measures.timed(
                lambda: measures.refresh(refresher, full_call))), "floor"))

            def routine() -> float:
                measures.minute_of_change(connection, added)
                return measures.timed(lambda: measures.refresh(refresher, routine_call))

            say("routine refresh")
            rows.append(Row("routine refresh after a minute of change", repeat(repeats, routine), "floor"))
            routine_steps = measures.refresh(refresher, routine_call)
            say("reads")
            now = connection.execute("select now()").fetchone()[0]
            dashboard = {f"dashboard: {title}": query
                         for title, query in grafana_panels.panel_queries(now, timedelta(days=7)).items()}
            for name, query in {**measures.READS, **dashboard}.items():
                rows.append(Row(name, repeat(max(20, repeats), lambda: measures.timed(
                    lambda: connection.execute(query).fetchall())), "old approach"))
            connection.commit()
            say("old approach")
            old_redis.write()
            sql_samples = repeat(repeats, lambda: measures.old_sql(connection))
            redis_samples = repeat(repeats, old_redis.scan)
            rows.append(Row("old approach: 13 SQL queries", sql_samples, "floor"))
            rows.append(Row("old approach: Redis SCAN + GET per key", redis_samples))
            rows.append(Row("old approach, one call (SQL + Redis)",
                            [a + b for a, b in zip(sql_samples, redis_samples)], "floor"))
            say("contention")
            quiet = measures.contention(libpq, contention_seconds, None, added)
            busy_full = measures.contention(libpq, contention_seconds, full_call, added)
            busy_routine = measures.contention(libpq, contention_seconds, routine_call, added)
            say("memory")
            memory = [measures.cli_refresh_memory(url), *sync_memory(url, redis_url, f"{old_redis.prefix}PB-*")]
        finally:
            old_redis.delete()
            added.delete(connection)
        # Leave the rollups true to the data again, for the next run.
        measures.refresh(refresher, full_call)
    return {"rows": rows, "routine_steps": routine_steps.get("steps"), "routine_mode": routine_steps.get("mode"),
            "contention": {"no refresh": quiet, "full refreshes back to back": busy_full,
                           "routine refreshes back to back": busy_routine},
            "memory": memory}


def sync_memory(url: str, redis_url: str, pattern: str) -> list[dict]:
    """The sync worker's peak memory over the scale's playbook keys, into a database of its own."""
    sync_url = sync_bench.bench_database(url)
    try:
        engine = db.create_engine(sync_url, poolclass=sa.pool.NullPool)
        migrate.upgrade(engine)
        engine.dispose()
        return measures.cli_sync_memory(sync_url, redis_url, pattern)
    finally:
        sync_bench.drop_bench_database(url)


def ratios(rows: list[Row]) -> dict[str, float | None]:
    old = next(row for row in rows if row.name.startswith("old approach, one call"))
    floor = rows[0]
    out = {}
    for row in rows:
        if row.baseline == "floor":
            out[row.name] = row.median / floor.median
        elif row.baseline == "old approach":
            out[row.name] = old.median / row.median
        else:
            out[row.name] = None
    return out


def render(result: dict, meta: dict) -> str:
    rows: list[Row] = result["rows"]
    ratio = ratios(rows)
    lines = [f"flywheel-sync benchmark, scale {meta['scale']} ({meta['incidents']:,} incidents), "
             f"{meta['repeats']} repetitions, {meta['machine']}",
             f"PostgreSQL {meta['postgres']}; {'own servers' if meta['embedded'] else 'given servers'}; "
             f"{meta['layout']} source tables, {meta['state']} state",
             ""]
    width = max(len(row.name) for row in rows)
    lines.append(f"{'measure'.ljust(width)}  {'median ms':>10}  {'min-max ms':>19}  ratio")
    lines.append("-" * (width + 42))
    for row in rows:
        spread = f"{min(row.samples):.1f}-{max(row.samples):.1f}"
        shown = ""
        if ratio[row.name] is not None:
            shown = (f"{ratio[row.name]:.2f}x floor" if row.baseline == "floor"
                     else f"old approach is {ratio[row.name]:,.0f}x slower")
        lines.append(f"{row.name.ljust(width)}  {row.median:>10.1f}  {spread:>19}  {shown}")
    lines.append("")
    lines.append(f"routine refresh (mode {result['routine_mode']}) steps: " + ", ".join(
        f"{step['step']} {step['ms']} ms" for step in result["routine_steps"] or []))
    lines.append("")
    lines.append("never block: a writer inserting incidents and a reader calling summary_json(), "
                 f"{meta['contention_seconds']:g} s each")
    lines.append(f"{'while':<32} {'writes':>7} {'write p50/p99 ms':>17} {'reads':>7} {'read p50/p99 ms':>16} "
                 f"{'refreshes':>9}")
    for name, numbers in result["contention"].items():
        lines.append(f"{name:<32} {numbers['writes']:>7} {_pair(numbers, 'write'):>17} {numbers['reads']:>7} "
                     f"{_pair(numbers, 'read'):>16} {numbers['refreshes']:>9}")
    lines.append("")
    lines.append(f"peak memory of the CLI, process start included ({meta['playbooks']:,} playbook keys):")
    for memory in result["memory"]:
        lines.append(f"  flywheel-sync {memory['label']}: {memory['peak_rss_mb']:.0f} MB "
                     f"(wall {memory['wall_ms']:.0f} ms)")
    return "\n".join(lines)


def _pair(numbers: dict, kind: str) -> str:
    low, high = numbers[f"{kind}_p50"], numbers[f"{kind}_p99"]
    return "-" if low is None else f"{low:.1f}/{high:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=["S", "M", "L"], default="S")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions of each measure (default 5)")
    parser.add_argument("--contention-seconds", type=float, default=8.0,
                        help="length of each writer/reader run (default 8)")
    parser.add_argument("--postgres", choices=dataset.POSTGRES_KINDS, default="embedded",
                        help="the benchmark's own server: embedded (default) or the machine's Debian PostgreSQL 15")
    parser.add_argument("--layout", choices=generate.LAYOUTS, default="plain",
                        help="the source tables: plain (default) or range-partitioned by month")
    parser.add_argument("--state", choices=dataset.STATES, default="normal",
                        help="normal (default), or stuck: a fifth of all incidents left active")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--stop-servers", action="store_true",
                        help="stop the servers under bench/.cache/ (the data stays) and exit")
    options = parser.parse_args()
    if options.stop_servers:
        dataset.stop_servers()
        return

    def say(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    chosen = dataset.servers(options.postgres)
    url = dataset.ensure(chosen.postgres_url, options.scale, say, options.layout, options.state)
    with psycopg.connect(dataset.libpq(url)) as connection:
        server_version = connection.execute("show server_version").fetchone()[0]
    result = measure(url, chosen.redis_url, options.scale, options.repeat, options.contention_seconds, say)
    meta = {"scale": options.scale, "incidents": generate.SIZES[options.scale].incidents,
            "playbooks": generate.SIZES[options.scale].playbooks,
            "repeats": options.repeat, "postgres": server_version, "embedded": chosen.embedded,
            "layout": options.layout, "state": options.state,
            "contention_seconds": options.contention_seconds,
            "machine": f"{platform.machine()}, {_cores()} cores, Python {platform.python_version()}",
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if options.json:
        rows = result["rows"]
        ratio = ratios(rows)
        print(json.dumps({**meta, **{key: value for key, value in result.items() if key != "rows"},
                          "rows": [{**asdict(row), "median": row.median, "min": min(row.samples),
                                    "max": max(row.samples), "ratio": ratio[row.name]} for row in rows]},
                         indent=2))
    else:
        print(render(result, meta))


def _cores() -> int:
    return os.cpu_count() or 0


if __name__ == "__main__":
    main()
