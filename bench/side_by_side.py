"""One release against another, side by side: the routine and full refresh and every read of
bench/run.py, alternating between this checkout and another one, so both see the same load.

Issue 12's "within 10% of before" on a shared machine: runs of bench/run.py a few minutes apart
differ by more than a release does, so this alternates at the finest grain -- refresh by refresh, read
by read. Each checkout runs on its own data set of the same scale, layout and state, built by its own
code (so its schema is its release's) in its own bench/.cache, on the same kind of server:

    git worktree add /tmp/before 341a444 && make -C /tmp/before setup
    .venv/bin/python bench/side_by_side.py --before /tmp/before --scale S --postgres debian15

Both sides' flywheel tables are vacuumed first. A round is, for each checkout in turn (in the other
order every other round): a minute of change (bench/measures.py) and a routine refresh; every
--full-every rounds, a full refresh; then each read once (the JSON and Prometheus functions,
the summary view, and every dashboard panel as Grafana sends it over 7 days, each checkout with its
own panels), then each read again (", again": a session's first read after a refresh pays for what
the refresh invalidated). Times are wall clock at the client, medians over the rounds; the ratio is
this / before.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

import dataset
import measures
from flywheel_sync.local import generate

CHECKOUT = Path(__file__).resolve().parent.parent
WITHIN = 1.10
ROUTINE = "routine refresh after a minute of change"
FULL = "full refresh"
# The second time a read runs after a refresh: a session's first read after a refresh pays for what the
# refresh invalidated in every session (plans, catalog caches), the next ones do not.
AGAIN = ", again"

# Run by each checkout's own interpreter and code: the URL of its data set, then its reads as JSON.
_PREPARE = """
import datetime, json, sys
sys.path.insert(0, "bench")
import dataset, grafana_panels, measures
url = dataset.ensure(dataset.postgres_server(sys.argv[1]), sys.argv[2], lambda message: print(message, file=sys.stderr),
                     sys.argv[3], sys.argv[4])
now = datetime.datetime.now(datetime.timezone.utc)
panels = grafana_panels.panel_queries(now, datetime.timedelta(days=7))
print(json.dumps({"url": dataset.libpq(url),
                  "reads": {**measures.READS, **{f"dashboard: {title}": sql for title, sql in panels.items()}}}))
"""


@dataclass
class Side:
    label: str
    url: str
    reads: dict[str, str]
    samples: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, ms: float) -> None:
        self.samples.setdefault(name, []).append(ms)


def prepare(label: str, checkout: Path, options: argparse.Namespace) -> Side:
    """The checkout's data set (built when absent, by its own code) and its reads."""
    print(f"[{time.strftime('%H:%M:%S')}] {label}: data set of {checkout}", file=sys.stderr, flush=True)
    run = subprocess.run([str(checkout / ".venv" / "bin" / "python"), "-c", _PREPARE, options.postgres,
                          options.scale, options.layout, options.state],
                         cwd=checkout, stdout=subprocess.PIPE, text=True)
    if run.returncode != 0:
        raise SystemExit(f"{checkout}: could not prepare its data set (is it set up? make -C {checkout} setup)")
    prepared = json.loads(run.stdout.splitlines()[-1])
    return Side(label, prepared["url"], prepared["reads"])


def vacuum_flywheel_tables(connection: psycopg.Connection) -> None:
    """VACUUM (ANALYZE) every table of schema flywheel, as autovacuum keeps them: each side starts with
    its rollups free of the dead rows earlier runs left, whenever autovacuum last came by (a rollup with
    ten times its rows dead made the routine refresh at M 1.3x slower for one side)."""
    tables = connection.execute("select format('%I.%I', schemaname, tablename) from pg_tables"
                                " where schemaname = 'flywheel'").fetchall()
    connection.execute(f"vacuum (analyze) {', '.join(table for (table,) in tables)}")


def compare(sides: list[Side], rounds: int, full_every: int) -> None:
    """Alternate the sides measure by measure, ``rounds`` times; each side's samples land on it."""
    connections = {side.label: (psycopg.connect(side.url), psycopg.connect(side.url, autocommit=True),
                                measures.Additions()) for side in sides}
    try:
        calls = {side.label: {kind: measures.refresh_statement(connections[side.label][1], full=kind == FULL)
                              for kind in (ROUTINE, FULL)} for side in sides}
        for side in sides:  # a first refresh and read of each: plans cached, as in a long-running session
            _, refresher, _ = connections[side.label]
            vacuum_flywheel_tables(refresher)
            measures.refresh(refresher, calls[side.label][FULL])
            for sql in side.reads.values():
                refresher.execute(sql).fetchall()
        for round_number in range(rounds):
            # Each round in the other order, so neither side always runs right after the other's work.
            order = sides if round_number % 2 == 0 else sides[::-1]
            for side in order:
                writer, refresher, added = connections[side.label]
                measures.minute_of_change(writer, added)
                side.add(ROUTINE, measures.timed(lambda: measures.refresh(refresher, calls[side.label][ROUTINE])))
                if round_number % full_every == 0:
                    side.add(FULL, measures.timed(lambda: measures.refresh(refresher, calls[side.label][FULL])))
            for suffix in ("", AGAIN):
                for name in sides[0].reads:
                    for side in order:
                        refresher = connections[side.label][1]
                        side.add(name + suffix,
                                 measures.timed(lambda: refresher.execute(side.reads[name]).fetchall()))
    finally:
        for side in sides:
            writer, refresher, added = connections[side.label]
            added.delete(writer)
            # Leave the rollups true to the data again, for the next run.
            measures.refresh(refresher, calls[side.label][FULL])
            writer.close()
            refresher.close()


def table(before: Side, this: Side) -> list[dict]:
    rows = []
    for name in this.samples:
        if name not in before.samples:
            continue
        old, new = statistics.median(before.samples[name]), statistics.median(this.samples[name])
        rows.append({"measure": name, "before_ms": old, "this_ms": new, "ratio": new / old,
                     "runs": len(this.samples[name])})
    return rows


def render(rows: list[dict], options: argparse.Namespace, load: tuple[float, ...]) -> str:
    reads = [row for row in rows if row["measure"] not in (ROUTINE, FULL)]
    lines = [f"side by side: {options.before} (before) and {CHECKOUT} (this), scale {options.scale}, "
             f"{options.postgres}, {options.layout}, {options.state} state, {options.rounds} rounds; "
             f"load average {' / '.join(f'{value:.1f}' for value in load)}",
             "",
             f"{'measure (median ms)':<48}{'before':>10}{'this':>10}{'this/before':>13}{'runs':>6}"]
    for row in rows:
        flag = "" if row["ratio"] <= WITHIN else "  over 10%"
        lines.append(f"{row['measure'][:48]:<48}{row['before_ms']:>10.3f}{row['this_ms']:>10.3f}"
                     f"{row['ratio']:>13.2f}{row['runs']:>6}{flag}")
    firsts = [row for row in reads if AGAIN not in row["measure"]]
    agains = [row for row in reads if AGAIN in row["measure"]]
    for title, chosen in (("every read after a refresh, summed", firsts),
                          ("every read again, summed", agains)):
        if chosen:
            before_total, this_total = (sum(row[key] for row in chosen) for key in ("before_ms", "this_ms"))
            lines.append(f"{title:<48}{before_total:>10.3f}{this_total:>10.3f}{this_total / before_total:>13.2f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, type=Path, metavar="DIR",
                        help="the other checkout, set up (make setup): the baseline")
    parser.add_argument("--scale", choices=["S", "M", "L"], default="S")
    parser.add_argument("--postgres", choices=dataset.POSTGRES_KINDS, default="embedded")
    parser.add_argument("--layout", choices=generate.LAYOUTS, default="plain")
    parser.add_argument("--state", choices=dataset.STATES, default="realistic")
    parser.add_argument("--rounds", type=int, default=30, help="rounds of alternation (default 30)")
    parser.add_argument("--full-every", type=int, default=5, metavar="N",
                        help="a full refresh every N rounds (default 5; it takes seconds at L)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    options = parser.parse_args()
    before = prepare("before", options.before.resolve(), options)
    this = prepare("this", CHECKOUT, options)
    compare([before, this], options.rounds, options.full_every)
    rows = table(before, this)
    load = os.getloadavg()
    if options.json:
        print(json.dumps({"before": str(options.before), "scale": options.scale, "postgres": options.postgres,
                          "layout": options.layout, "state": options.state, "load": load, "rows": rows},
                         indent=2))
        return
    print(render(rows, options, load))


if __name__ == "__main__":
    main()
