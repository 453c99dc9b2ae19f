"""The refresh as production runs it: on the machine's Debian PostgreSQL 15 (default settings, JIT on)
and on the embedded server, on plain and on range-partitioned source tables, on a normal platform, on
a stuck one (a fifth of all incidents active for months) and on a realistic one (scale S's recent
traffic at every scale, flywheel_sync.local.generate).

For each server, layout and state (each a cached database of bench/dataset.py) it times, with the
refresh function's JIT at the server's default and with the function-level ``jit = off``:

  full refresh                         flywheel.refresh(full => true)
  routine refresh                      after a realistic minute of change (measures.minute_of_change)
  one incident from 400 days ago       the routine refresh after one resolved incident created about
  updated                              400 days ago (the oldest, where history is shorter) changed
                                       status; a different incident each repetition (a changed one
                                       is tracked for the lookback afterwards, and costs less again)

The function-level setting is the refresh function's own ``SET jit = off`` when the installed
release declares it, else emulated here with ``ALTER FUNCTION flywheel.refresh ... SET jit = off``
(and ``RESET jit`` for the server default); the table says which, and the function is left as found.

With --candidate-refresh FILE (a changed copy of sql/refresh/refresh.sql), that
definition is installed with CREATE OR REPLACE for the measures, and the release's own put back
afterwards: how a proposed change of the refresh is measured before it becomes a release.

With --function-jit-only, only the function-level ``jit = off`` is measured: what a release that
declares it (0004 on) runs, without the server-default mode's minutes of compiling on partitions.

With --ddl (partitioned layout), it also measures how long the platform's writes wait when partition
maintenance runs during a full refresh: a writer inserts an incident every 5 ms while pg_partman's
two statements run once the full refresh holds its locks, CREATE TABLE ... PARTITION OF (premake)
and ALTER TABLE ... DETACH PARTITION (retention), without and with lock_timeout.

    .venv/bin/python bench/deployments.py --scale S
    .venv/bin/python bench/deployments.py --scale M --postgres debian15 --layout partitioned --state normal --ddl
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import statistics
import sys
import threading
import time
import uuid
from datetime import date

import psycopg

import dataset
import measures
from flywheel_sync.database import releases
from flywheel_sync.local import generate

REFRESH_FUNCTION = "flywheel.refresh(timestamptz, boolean)"
JIT_MODES = ("server default", "function jit = off")
OLD_AGE_DAYS = 400


def released_jit() -> str | None:
    """'off' when the release's definition of flywheel.refresh declares SET jit = off, else None."""
    return "off" if re.search(r"\bset\s+jit\s*(=|to)\s*'?off", released_refresh(), re.I) else None


def set_function_jit(connection: psycopg.Connection, mode: str) -> None:
    clause = "set jit = off" if mode == "function jit = off" else "reset jit"
    connection.execute(f"alter function {REFRESH_FUNCTION} {clause}")


def old_incidents(connection: psycopg.Connection, count: int) -> list[tuple[str, str, float]]:
    """``count`` resolved or closed incidents created about OLD_AGE_DAYS ago (the oldest ones if
    history is shorter): key, status, age in days. Not active, so a change to one is not tracked, and
    a different one each time, since a changed incident is tracked for the lookback afterwards."""
    return connection.execute(
        "select incident_id, status, extract(epoch from now() - created_at) / 86400 from public.incidents"
        " where status in ('resolved', 'closed')"
        "   and created_at >= greatest(now() - make_interval(days => %s),"
        "                              (select min(created_at) from public.incidents))"
        " order by created_at limit %s", (OLD_AGE_DAYS, count)).fetchall()


def install_refresh(url: str, definition: str) -> None:
    """A definition of flywheel.refresh (sql/refresh/refresh.sql or a candidate's text), replacing the installed one."""
    replacing = definition.replace("create function flywheel.refresh(",
                                   "create or replace function flywheel.refresh(", 1)
    if replacing == definition:
        raise SystemExit("the candidate does not hold `create function flywheel.refresh(`")
    with psycopg.connect(dataset.libpq(url), autocommit=True) as connection:
        connection.execute(replacing)


def released_refresh() -> str:
    return releases.head_file("refresh").read_text()


def measure_refreshes(url: str, repeats: int, say, jit_modes: tuple[str, ...] = JIT_MODES) -> dict:
    """Each measure alternates the JIT modes repetition by repetition, so both see the same state
    (the rows within the lookback, the tracked set and the cache grow as the benchmark writes)."""
    libpq = dataset.libpq(url)
    added = measures.Additions()
    samples: dict[str, list[float]] = {}
    steps: dict[str, list] = {}
    with psycopg.connect(libpq) as connection, psycopg.connect(libpq, autocommit=True) as refresher:
        server = refresher.execute("select current_setting('jit'), pg_jit_available(),"
                                   " current_setting('jit_above_cost'), current_setting('server_version')").fetchone()
        old = old_incidents(connection, len(jit_modes) * repeats)
        connection.commit()
        unchanged = iter(old)
        full_call = measures.refresh_statement(refresher, full=True)
        routine_call = measures.refresh_statement(refresher, full=False)

        def timed_refresh(name: str, mode: str, call: str) -> None:
            started = time.perf_counter()
            result = measures.refresh(refresher, call)
            samples.setdefault(f"{name} ({mode})", []).append((time.perf_counter() - started) * 1000)
            steps[f"{name} ({mode})"] = result["steps"]

        def full(mode: str) -> None:
            timed_refresh("full refresh", mode, full_call)

        def routine(mode: str) -> None:
            measures.minute_of_change(connection, added)
            timed_refresh("routine refresh", mode, routine_call)

        def old_row(mode: str) -> None:
            key, status, _ = next(unchanged)
            connection.execute("update public.incidents set status = %s, updated_at = clock_timestamp()"
                               " where incident_id = %s", ("closed" if status == "resolved" else "resolved", key))
            connection.commit()
            timed_refresh("old incident updated", mode, routine_call)

        try:
            for what, run in (("full refresh", full), ("routine refresh", routine),
                              (f"one incident from {OLD_AGE_DAYS} days ago updated", old_row)):
                say(f"  {what}")
                if run is routine:
                    # The first after a full one reads what the full one left: not a routine minute.
                    measures.minute_of_change(connection, added)
                    measures.refresh(refresher, routine_call)
                for _ in range(repeats):
                    for mode in jit_modes:
                        set_function_jit(refresher, mode)
                        run(mode)
        finally:
            refresher.execute(f"alter function {REFRESH_FUNCTION} "
                              + ("set jit = off" if released_jit() == "off" else "reset jit"))
            for key, status, _ in old:
                connection.execute("update public.incidents set status = %s, updated_at = clock_timestamp()"
                                   " where incident_id = %s", (status, key))
            connection.commit()
            added.delete(connection)
            measures.refresh(refresher, full_call)
    rows = {name: {"median": statistics.median(values), "min": min(values), "max": max(values)}
            for name, values in samples.items()}
    return {"rows": rows, "function_jit": "declared by the release" if released_jit() == "off"
            else "emulated with ALTER FUNCTION ... SET jit = off",
            "server": {"jit": server[0], "jit_available": server[1], "jit_above_cost": server[2],
                       "version": server[3]},
            "old_incident_age_days": round(float(old[0][2])),
            "routine_steps": {mode: steps[f"routine refresh ({mode})"] for mode in jit_modes}}


def ddl_during_full_refresh(url: str, lock_timeout: str | None, statement: str, say) -> dict:
    """Run ``statement`` (partition maintenance) once a full refresh holds its locks, while a writer
    inserts incidents; how long the DDL took and the writes' worst wait."""
    libpq = dataset.libpq(url)
    added = measures.Additions()
    stop = threading.Event()
    writes: list[float] = []
    prefix = f"BENCH-DDL{uuid.uuid4().hex[:6]}-"

    def writer() -> None:
        with psycopg.connect(libpq, autocommit=True) as connection:
            for n in itertools.count(1):
                if stop.is_set():
                    return
                key = f"{prefix}{n}"
                writes.append(measures.timed(lambda: connection.execute(
                    "insert into public.incidents (incident_id, alertname, status, created_at, updated_at)"
                    " values (%s, 'HighCPU', 'investigating', clock_timestamp(), clock_timestamp())", (key,))))
                added.incidents.append(key)
                time.sleep(0.005)

    refresh_ms: list[float] = []

    def full_refresh() -> None:
        with psycopg.connect(libpq, autocommit=True) as refresher:
            refresh_ms.append(measures.timed(lambda: measures.refresh(
                refresher, measures.refresh_statement(refresher, full=True))))

    with psycopg.connect(libpq, autocommit=True) as ddl:
        writing = threading.Thread(target=writer)
        writing.start()
        refreshing = threading.Thread(target=full_refresh)
        refreshing.start()
        # The refresh holds ACCESS SHARE on the incidents' partitions from its first read of them.
        while not ddl.execute(
                "select exists (select from pg_locks l join pg_stat_activity a using (pid)"
                " where a.query like '%%flywheel.refresh(full => true)%%' and l.granted"
                " and l.relation = 'public.incidents'::regclass)").fetchone()[0]:
            time.sleep(0.01)
        before = len(writes)
        if lock_timeout:
            ddl.execute(f"set lock_timeout = '{lock_timeout}'")
        started = time.perf_counter()
        outcome = "done"
        try:
            ddl.execute(statement)
        except psycopg.errors.LockNotAvailable:
            outcome = "gave up (lock_timeout)"
        ddl_ms = (time.perf_counter() - started) * 1000
        ddl.execute("reset lock_timeout")
        refreshing.join()
        stop.set()
        writing.join()
        during = writes[before:]
        with psycopg.connect(libpq) as connection:
            added.delete(connection)
    say(f"  {statement[:60]}... lock_timeout {lock_timeout}: {outcome} in {ddl_ms:.0f} ms")
    return {"statement": statement, "lock_timeout": lock_timeout, "outcome": outcome, "ddl_ms": ddl_ms,
            "full_refresh_ms": refresh_ms[0], "writes_during": len(during),
            "worst_write_ms": max(during, default=0.0),
            "write_p50_ms": measures.percentile(during, 0.5)}


def measure_ddl(url: str, say) -> list[dict]:
    """pg_partman's premake (the month after the last) and retention (detach the oldest month), each
    without and with lock_timeout, during a full refresh; the partitions are put back afterwards."""
    libpq = dataset.libpq(url)
    with psycopg.connect(libpq, autocommit=True) as connection:
        months = sorted(name for (name,) in connection.execute(
            "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid"
            " where i.inhparent = 'public.incidents'::regclass and c.relname ~ '^incidents_p[0-9]{4}_[0-9]{2}$'"))
    oldest = months[0]
    oldest_month = date(int(oldest[-7:-3]), int(oldest[-2:]), 1)
    oldest_bound = (f"for values from ('{oldest_month} 00:00+00')"
                    f" to ('{generate.add_months(oldest_month, 1)} 00:00+00')")
    after_last = generate.add_months(date(int(months[-1][-7:-3]), int(months[-1][-2:]), 1), 1)
    premake = (f"create table public.incidents_bench_premake partition of public.incidents for values"
               f" from ('{after_last} 00:00+00') to ('{generate.add_months(after_last, 1)} 00:00+00')")
    detach = f"alter table public.incidents detach partition public.{oldest}"
    results = []
    for lock_timeout in (None, "100ms"):
        results.append(ddl_during_full_refresh(url, lock_timeout, premake, say))
        results.append(ddl_during_full_refresh(url, lock_timeout, detach, say))
        with psycopg.connect(libpq, autocommit=True) as connection:
            connection.execute("drop table if exists public.incidents_bench_premake")
            if not connection.execute("select exists (select from pg_inherits where inhrelid = %s::regclass)",
                                      (f"public.{oldest}",)).fetchone()[0]:
                connection.execute(f"alter table public.incidents attach partition public.{oldest} {oldest_bound}")
    return results


def render(results: list[dict], ddl: list[dict]) -> str:
    lines = []
    for result in results:
        server = result["server"]
        lines.append(f"{result['postgres']} (PostgreSQL {server['version']}, jit {server['jit']}, "
                     f"JIT available: {server['jit_available']}), scale {result['scale']}, {result['layout']}, "
                     f"{result['state']}; refresh: {result['refresh']}; function jit: {result['function_jit']}")
        for name, numbers in result["rows"].items():
            lines.append(f"  {name:<48} {numbers['median']:>9.1f} ms  ({numbers['min']:.1f}-{numbers['max']:.1f})")
        lines.append(f"  (the old incident was {result['old_incident_age_days']} days old)")
        lines.append("")
    for row in ddl:
        lines.append(f"{row['statement'][:70]:<70} lock_timeout {row['lock_timeout'] or 'none':<6} "
                     f"{row['outcome']} after {row['ddl_ms']:.0f} ms; worst write {row['worst_write_ms']:.0f} ms "
                     f"(p50 {row['write_p50_ms'] or 0:.1f}, {row['writes_during']} writes); full refresh "
                     f"{row['full_refresh_ms']:.0f} ms")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=["S", "M", "L"], default="S")
    parser.add_argument("--postgres", choices=dataset.POSTGRES_KINDS, action="append",
                        help="server (repeatable; default both)")
    parser.add_argument("--layout", choices=generate.LAYOUTS, action="append",
                        help="source layout (repeatable; default both)")
    parser.add_argument("--state", choices=dataset.STATES, action="append",
                        help="platform state (repeatable; default all)")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions of each measure (default 5)")
    parser.add_argument("--candidate-refresh", metavar="FILE",
                        help="measure this definition of flywheel.refresh instead of the release's")
    parser.add_argument("--function-jit-only", action="store_true",
                        help="only the function-level jit = off (what a release declaring it runs): the server-default"
                             " JIT mode compiles for seconds to minutes a run on partitioned sources")
    parser.add_argument("--ddl", action="store_true",
                        help="also partition maintenance during a full refresh (partitioned layouts)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    options = parser.parse_args()

    def say(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    results, ddl = [], []
    for postgres in options.postgres or dataset.POSTGRES_KINDS:
        server_url = dataset.postgres_server(postgres)
        for layout in options.layout or generate.LAYOUTS:
            for state in options.state or dataset.STATES:
                say(f"{postgres}, scale {options.scale}, {layout}, {state}")
                url = dataset.ensure(server_url, options.scale, say, layout, state)
                if options.candidate_refresh:
                    install_refresh(url, open(options.candidate_refresh).read())
                try:
                    result = measure_refreshes(url, options.repeat, say,
                                               JIT_MODES[1:] if options.function_jit_only else JIT_MODES)
                finally:
                    if options.candidate_refresh:
                        install_refresh(url, released_refresh())
                results.append({"postgres": postgres, "scale": options.scale, "layout": layout, "state": state,
                                "refresh": options.candidate_refresh or "the release's", **result})
                if options.ddl and layout == "partitioned":
                    ddl.extend({"postgres": postgres, "scale": options.scale, "state": state, **row}
                               for row in measure_ddl(url, say))
    if options.json:
        print(json.dumps({"refreshes": results, "ddl": ddl,
                          "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=2, default=str))
    else:
        print(render(results, ddl))


if __name__ == "__main__":
    main()
