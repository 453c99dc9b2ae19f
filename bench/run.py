"""The flywheel-sync benchmark: one table, one run, every number beside its baseline.

Builds (or reuses) the data set of a scale with the project's generator (by default in its realistic
state: the same recent traffic, active incidents and backlog at every scale, so that a larger scale
differs by its history only), then measures on it, in this order: the floor (one sequential count(*)
pass per source table), the grouped floor (one exact pass per table counting its rows per local day),
a full refresh, a routine refresh after a realistic minute of change, the reads (the JSON and
Prometheus functions, and every panel of the Grafana dashboard over its default 7 days, on two years
of history in tiers at one refresh every 5 s), the old
approach (its 13 queries and its GET per Redis key), a writer and a reader with and without
refreshes running, and the peak memory of the CLI: a full refresh, and two sync passes over the
scale's playbook keys (the first inserts them all, the second finds nothing changed) into a database
of their own. Prints medians and min-max of the repetitions, with ratios; --json prints the same as
JSON. --refresh-only stops after the routine refresh. With --scale given more than once, the scales
are measured one after the other in the same session and each refresh is also shown as a ratio of
the first scale's (routine L/S).

    make bench SCALE=M
    .venv/bin/python bench/run.py --scale S --repeat 7 --json > bench-S.json
    .venv/bin/python bench/run.py --scale M --postgres debian15 --layout partitioned
    .venv/bin/python bench/run.py --scale S --scale L --postgres debian15 --refresh-only

--postgres debian15 runs on the machine's Debian PostgreSQL 15 with its default settings (JIT on),
a cluster the benchmark starts itself (bench/dataset.py); bench/deployments.py compares the two
servers, both layouts and the platform's states on the refresh alone.
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
from flywheel_sync.database import db, migrate
from flywheel_sync.local import generate


@dataclass
class Row:
    name: str
    samples: list[float]
    # What the row is shown as a ratio of: "floor", "grouped floor" (the rows of those names) or
    # "old approach" (how many times slower the old approach's one call is).
    baselines: tuple[str, ...] = ()

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


FLOOR = "floor: count(*) seq pass per table, summed"
GROUPED_FLOOR = "grouped floor: count(*) per local day per table, summed"
ROUTINE = "routine refresh after a minute of change"
BASELINE_ROWS = {"floor": FLOOR, "grouped floor": GROUPED_FLOOR}


def repeat(times: int, run) -> list[float]:
    return [run() for _ in range(times)]


def measure(url: str, redis_url: str, scale: str, repeats: int, contention_seconds: float, say,
            refresh_only: bool = False) -> dict:
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
            rows.append(Row(FLOOR, repeat(repeats, lambda: measures.floor_pass(connection))))
            say("grouped floor")
            rows.append(Row(GROUPED_FLOOR, repeat(repeats, lambda: measures.grouped_floor_pass(connection)),
                            ("floor",)))
            say("full refresh")
            full_steps = {}

            def full() -> float:
                nonlocal full_steps
                started = time.perf_counter()
                full_steps = measures.refresh(refresher, full_call)
                return (time.perf_counter() - started) * 1000

            rows.append(Row("full refresh", repeat(repeats, full), ("floor", "grouped floor")))

            def routine() -> float:
                measures.minute_of_change(connection, added)
                return measures.timed(lambda: measures.refresh(refresher, routine_call))

            say("routine refresh")
            rows.append(Row(ROUTINE, repeat(repeats, routine), ("floor",)))
            routine_steps = measures.refresh(refresher, routine_call)
            result = {"rows": rows, "routine_steps": routine_steps.get("steps"),
                      "routine_mode": routine_steps.get("mode"), "full_steps": full_steps.get("steps"),
                      "contention": {}, "memory": []}
            if refresh_only:
                return result
            say("reads")
            now = connection.execute("select now()").fetchone()[0]
            dashboard = {f"dashboard: {title}": query
                         for title, query in grafana_panels.panel_queries(now, timedelta(days=7)).items()}
            for name, query in {**measures.READS, **dashboard}.items():
                rows.append(Row(name, repeat(max(20, repeats), lambda: measures.timed(
                    lambda: connection.execute(query).fetchall())), ("old approach",)))
            connection.commit()
            say("old approach")
            old_redis.write()
            sql_samples = repeat(repeats, lambda: measures.old_sql(connection))
            redis_samples = repeat(repeats, old_redis.scan)
            rows.append(Row("old approach: 13 SQL queries", sql_samples, ("floor",)))
            rows.append(Row("old approach: Redis SCAN + GET per key", redis_samples))
            rows.append(Row("old approach, one call (SQL + Redis)",
                            [a + b for a, b in zip(sql_samples, redis_samples)], ("floor",)))
            say("contention")
            quiet = measures.contention(libpq, contention_seconds, None, added)
            busy_full = measures.contention(libpq, contention_seconds, full_call, added)
            busy_routine = measures.contention(libpq, contention_seconds, routine_call, added)
            say("memory")
            result["memory"] = [measures.cli_refresh_memory(url),
                                *sync_memory(url, redis_url, f"{old_redis.prefix}PB-*")]
            result["contention"] = {"no refresh": quiet, "full refreshes back to back": busy_full,
                                    "routine refreshes back to back": busy_routine}
            return result
        finally:
            old_redis.delete()
            added.delete(connection)
            # Leave the rollups true to the data again, for the next run.
            measures.refresh(refresher, full_call)


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


def ratios(rows: list[Row]) -> dict[str, dict[str, float]]:
    """Each row's ratio to each of its baselines (by the baseline's name), of medians."""
    by_name = {row.name: row for row in rows}
    old = next((row for row in rows if row.name.startswith("old approach, one call")), None)
    out = {}
    for row in rows:
        out[row.name] = {}
        for baseline in row.baselines:
            if baseline == "old approach":
                if old is not None:
                    out[row.name][baseline] = old.median / row.median
            else:
                out[row.name][baseline] = row.median / by_name[BASELINE_ROWS[baseline]].median
    return out


def across_scales(results: list[tuple[str, dict]]) -> dict[str, dict[str, float]]:
    """The refreshes of each later scale as a ratio of the first scale's (medians): routine L/S."""
    first_scale, first = results[0]
    first_rows = {row.name: row for row in first["rows"]}
    out = {}
    for scale, result in results[1:]:
        rows = {row.name: row for row in result["rows"]}
        out[f"{scale}/{first_scale}"] = {name: rows[name].median / first_rows[name].median
                                         for name in (ROUTINE, "full refresh", FLOOR, GROUPED_FLOOR)}
    return out


def render(result: dict, meta: dict) -> str:
    rows: list[Row] = result["rows"]
    ratio = ratios(rows)
    lines = [f"flywheel-sync benchmark, scale {meta['scale']} ({meta['incidents']:,} incidents), "
             f"{meta['repeats']} repetitions, {meta['machine']}",
             f"PostgreSQL {meta['postgres']}; {'own servers' if meta['embedded'] else 'given servers'}; "
             f"{meta['layout']} source tables, {meta['state']} state; load average "
             + " / ".join(f"{load:.1f}" for load in meta["load_average"]),
             ""]
    width = max(len(row.name) for row in rows)
    lines.append(f"{'measure'.ljust(width)}  {'median ms':>10}  {'min-max ms':>19}  ratio")
    lines.append("-" * (width + 42))
    for row in rows:
        spread = f"{min(row.samples):.1f}-{max(row.samples):.1f}"
        shown = ", ".join(f"old approach is {value:,.0f}x slower" if baseline == "old approach"
                          else f"{value:.2f}x {baseline}" for baseline, value in ratio[row.name].items())
        lines.append(f"{row.name.ljust(width)}  {row.median:>10.1f}  {spread:>19}  {shown}")
    lines.append("")
    for kind in ("routine", "full"):
        lines.append(f"{kind} refresh (last run) steps: " + ", ".join(
            f"{step['step']} {step['ms']} ms" for step in result[f"{kind}_steps"] or []))
    lines.append("")
    if not result["contention"]:
        return "\n".join(lines)
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
    parser.add_argument("--scale", choices=["S", "M", "L"], action="append",
                        help="S (default), M or L; repeat it to measure several in one session (routine L/S)")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions of each measure (default 5)")
    parser.add_argument("--contention-seconds", type=float, default=8.0,
                        help="length of each writer/reader run (default 8)")
    parser.add_argument("--postgres", choices=dataset.POSTGRES_KINDS, default="embedded",
                        help="the benchmark's own server: embedded (default) or the machine's Debian PostgreSQL 15")
    parser.add_argument("--layout", choices=generate.LAYOUTS, default="plain",
                        help="the source tables: plain (default) or range-partitioned by month")
    parser.add_argument("--state", choices=dataset.STATES, default="realistic",
                        help="realistic (default): every scale's last week has scale S's traffic, active incidents"
                             " and backlog; normal: recent traffic grows with the scale; stuck: a fifth of all"
                             " incidents left active")
    parser.add_argument("--refresh-only", action="store_true",
                        help="measure the floors and the refreshes only (no reads, old approach, contention, memory)")
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
    results = []
    for scale in options.scale or ["S"]:
        url = dataset.ensure(chosen.postgres_url, scale, say, options.layout, options.state)
        with psycopg.connect(dataset.libpq(url)) as connection:
            server_version = connection.execute("show server_version").fetchone()[0]
        say(f"scale {scale}")
        result = measure(url, chosen.redis_url, scale, options.repeat, options.contention_seconds, say,
                         options.refresh_only)
        meta = {"scale": scale, "incidents": generate.SIZES[scale].incidents,
                "playbooks": generate.SIZES[scale].playbooks,
                "repeats": options.repeat, "postgres": server_version, "embedded": chosen.embedded,
                "layout": options.layout, "state": options.state,
                "contention_seconds": options.contention_seconds,
                "machine": f"{platform.machine()}, {_cores()} cores, Python {platform.python_version()}",
                "load_average": os.getloadavg(),
                "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        results.append((scale, result, meta))
    compared = across_scales([(scale, result) for scale, result, _ in results]) if len(results) > 1 else {}
    if options.json:
        runs = [{**meta, **{key: value for key, value in result.items() if key != "rows"},
                 "rows": [{**asdict(row), "median": row.median, "min": min(row.samples),
                           "max": max(row.samples), "ratio": ratios(result["rows"])[row.name]}
                          for row in result["rows"]]}
                for _, result, meta in results]
        print(json.dumps(runs[0] if len(runs) == 1 else {"runs": runs, "across scales": compared}, indent=2))
        return
    print("\n\n".join(render(result, meta) for _, result, meta in results))
    for pair, by_measure in compared.items():
        print(f"\n{pair}, same session: " + ", ".join(f"{name} {value:.2f}" for name, value in by_measure.items()))


def _cores() -> int:
    return os.cpu_count() or 0


if __name__ == "__main__":
    main()
