"""How long each Grafana panel's query takes at 1 day, 7 days, 90 days and 2 years of history, and the
bytes that history takes (issue 13).

Runs on the benchmark's data set of a scale (bench/dataset.py: built once per scale and server, then
cached), after a full refresh, with history generated the way the refresh would have left it at one
refresh every --refresh-seconds (5 s by default): raw snapshots for the history_raw_retention setting
and the buckets of each tier (1 minute, 5 minutes, 1 hour, 6 hours) for its retention, at most two
years (copies of the real snapshot, a few metrics varied), and refresh_log at the same rate for the retention setting (without their
steps), one run in a thousand failed. Each panel's SQL is expanded with Grafana's macros (tests/grafana_macros.py) for the
range up to now, with $__interval as Grafana sets it for a panel about 1,000 px wide (the range over
1,000, rounded as Grafana rounds it, never below the panel's minimum interval), and run --runs times
under EXPLAIN (ANALYZE, TIMING OFF): the database's time (planning and execution; not the client's
decoding of the rows, which a Python client spends more on than the server) is printed per panel and
range, median of the runs, with the dashboard's sum (every panel as Grafana sends it, the panels
without a range included) per range, median and least. The baseline is reading flywheel.summary (the
cheapest panel) in the same run; machine load shifts every number, the ratios less.

Then the storage: bytes per row of each tier (table, indexes and TOAST, after VACUUM) and per year of
history at the refresh rate, with the default retentions and with every tier kept a whole year.

    .venv/bin/python bench/grafana_panels.py --scale L --postgres debian15
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

import psycopg
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flywheel_sync.database import db  # noqa: E402
from flywheel_sync.local import generate  # noqa: E402
from flywheel_sync.outputs import grafana  # noqa: E402
from tests.grafana_macros import TimeRange, expand, parse_interval  # noqa: E402

BASELINE = "select * from flywheel.summary"
RANGES = {"1d": timedelta(days=1), "7d": timedelta(days=7), "90d": timedelta(days=90), "2y": timedelta(days=730)}
HISTORY_SPAN = RANGES["2y"]
PANEL_WIDTH_PX = 1000
YEAR = timedelta(days=365)

# The newest real snapshot, copied back in time: one row per refresh over the raw retention.
RAW = """
insert into flywheel.snapshots (computed_at, timezone, playbook_count, playbooks_invalid, execution_success_rate,
    execution_success_rate_source, execution_success_sample, executions_24h, executions_7d, km_total,
    km_unvectorized_count, km_vectorized_rate, km_created_24h, flywheel_conversions_today, incidents_total,
    incidents_alertname_missing, alertname_null_rate, incidents_investigating, incidents_mitigating,
    incidents_stuck, type4_count, today_processed, count_1h, execution_success_today, settings_version_id,
    refresh_ms)
select s.computed_at - n * :refresh, timezone, playbook_count, playbooks_invalid,
    execution_success_rate, execution_success_rate_source, execution_success_sample, executions_24h, executions_7d,
    km_total, km_unvectorized_count + n % 7, km_vectorized_rate, km_created_24h, flywheel_conversions_today,
    incidents_total, incidents_alertname_missing, alertname_null_rate, incidents_investigating,
    incidents_mitigating, incidents_stuck + n % 3, type4_count, today_processed, count_1h + n % 13,
    execution_success_today, settings_version_id, 40 + n % 17
from (select * from flywheel.snapshots order by computed_at desc limit 1) as s
cross join generate_series(1, :rows) as n
"""

# The same snapshot as the refresh folds it: every bucket of the tier holds width / refresh snapshots.
TIER = """
insert into flywheel.history_buckets
select :width, date_bin(:width, s.computed_at, timestamptz '1970-01-01 00:00:00+00') - n * :width,
       folded, s.computed_at - n * :width,
       coalesce(execution_success_rate, 0) * folded, case when execution_success_rate is null then 0 else folded end,
       km_vectorized_rate * folded, alertname_null_rate * folded,
       playbook_count, playbooks_invalid, km_unvectorized_count + n % 7, incidents_stuck + n % 3, type4_count,
       count_1h + n % 13, today_processed, execution_success_today, flywheel_conversions_today, 40 + n % 17
from (select * from flywheel.snapshots order by computed_at desc limit 1) as s
cross join generate_series(1, :rows) as n
cross join (select cast(:folded as integer) as folded) as per_bucket
on conflict (bucket_width, bucket_start) do nothing
"""

REFRESH_LOG = """
insert into flywheel.refresh_log (started_at, finished_at, computed_at, mode, status, steps, error, sqlstate)
select started_at - n * :refresh, finished_at - n * :refresh, computed_at - n * :refresh, 'incremental',
       case when n % 1000 = 0 then 'failed' else 'ok' end, '[]',
       case when n % 1000 = 0 then 'canceling statement due to statement timeout' end,
       case when n % 1000 = 0 then '57014' end
from (select * from flywheel.refresh_log order by refresh_id desc limit 1) as newest
cross join generate_series(1, :rows) as n
"""

def retention(connection: sa.Connection, key: str) -> timedelta:
    seconds = connection.execute(sa.text(
        "select extract(epoch from (value #>> '{}')::interval) from flywheel.settings where key = :key"),
        {"key": key}).scalar_one()
    return timedelta(seconds=float(seconds))


def tiers(connection: sa.Connection) -> list[tuple[timedelta, timedelta]]:
    """(bucket width, retention) of every tier of flywheel.history_buckets."""
    return [tuple(row) for row in connection.execute(sa.text("select * from flywheel.history_tiers()"))]


def has_history(connection: sa.Connection) -> bool:
    """Whether the 6-hour tier holds the two years add_history() writes."""
    buckets = connection.execute(sa.text(
        "select count(*) from flywheel.history_buckets where bucket_width = interval '6 hours'")).scalar_one()
    return buckets >= HISTORY_SPAN / timedelta(hours=6)


def add_history(connection: sa.Connection, refresh_every: timedelta = timedelta(seconds=5)) -> None:
    """Two years of history as the refresh leaves it at one refresh every ``refresh_every``, behind the
    newest snapshot (write one first: a full refresh); refresh_log over the retention setting."""
    connection.execute(sa.text(
        "delete from flywheel.snapshots where snapshot_id < (select max(snapshot_id) from flywheel.snapshots)"))
    connection.execute(sa.text("delete from flywheel.history_buckets where bucket_start < now() - interval '1 day'"))
    connection.execute(sa.text(
        "delete from flywheel.refresh_log where refresh_id < (select max(refresh_id) from flywheel.refresh_log)"))
    connection.execute(sa.text(RAW), {"refresh": refresh_every,
                                      "rows": retention(connection, "history_raw_retention") // refresh_every})
    for width, kept in tiers(connection):
        connection.execute(sa.text(TIER), {"width": width, "rows": min(kept, HISTORY_SPAN) // width,
                                           "folded": width // refresh_every})
    connection.execute(sa.text(REFRESH_LOG), {"refresh": refresh_every,
                                              "rows": retention(connection, "retention") // refresh_every})


def round_interval(interval: timedelta) -> timedelta:
    """Grafana's rangeutil.roundInterval: the interval the front end sends for range / max data points."""
    ms = interval / timedelta(milliseconds=1)
    steps = ((10, 1), (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000),
             (3500, 2000), (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000), (45000, 30000),
             (90000, 60000), (210000, 120000), (450000, 300000), (750000, 600000), (1050000, 900000),
             (1500000, 1200000), (2700000, 1800000), (5400000, 3600000), (9000000, 7200000),
             (16200000, 10800000), (32400000, 21600000), (86400000, 43200000), (604800000, 86400000),
             (1814400000, 604800000), (3628800000, 2592000000))
    rounded = next((to for below, to in steps if ms < below), 31536000000)
    return timedelta(milliseconds=rounded)


def grafana_interval(span: timedelta, panel: dict) -> timedelta:
    """$__interval for a panel about 1,000 px wide, never below the panel's minimum interval."""
    wanted = round_interval(span / PANEL_WIDTH_PX)
    return max(wanted, parse_interval(panel["interval"])) if "interval" in panel else wanted


def _panels() -> list[dict]:
    return [panel for panel in grafana.dashboard()["panels"] if panel["type"] != "row"]


def panel_queries(now, span: timedelta) -> dict[str, str]:
    """Each panel's SQL as Grafana sends it for the span up to now."""
    time_range = TimeRange(now - span, now)
    return {panel["title"]: expand(panel["targets"][0]["rawSql"], time_range, grafana_interval(span, panel))
            for panel in _panels()}


def timed(engine: sa.Engine, sql: str, runs: int) -> tuple[float, int]:
    """Median ms of the runs and the rows returned (bench/run.py reads the two)."""
    median, _, rows = timed_with_least(engine, sql, runs)
    return median, rows


def timed_with_least(engine: sa.Engine, sql: str, runs: int) -> tuple[float, float, int]:
    """The database's time for the query: median and least ms of the runs (the least has the least
    interference from a loaded machine), planning and execution as EXPLAIN (ANALYZE, TIMING OFF) reports
    them, so neither the client's decoding of the rows nor the per-node timing is counted; and the rows
    returned (by a plain run before)."""
    durations = []
    with engine.connect() as connection:
        statement = sa.text(sql.replace(":", r"\:"))
        rows = len(connection.execute(statement).all())
        for _ in range(runs):
            plan = connection.execute(sa.text("explain (analyze, timing off, summary) " + sql.replace(":", r"\:")))
            durations.append(sum(float(line.split(":")[1].split()[0]) for (line,) in plan
                                 if line.startswith(("Planning Time", "Execution Time"))))
    return statistics.median(durations), min(durations), rows


def panel_times(engine: sa.Engine, now, runs: int) -> dict[str, dict[str, tuple[float, float, int]]]:
    """{range: {panel title: (median ms, least ms, rows)}}; a panel without a range is run once and counted in each."""
    times: dict[str, dict[str, tuple[float, float, int]]] = {label: {} for label in RANGES}
    for panel in _panels():
        uses_range = "$__" in panel["targets"][0]["rawSql"]
        once = None
        for label, span in RANGES.items():
            if once is None or uses_range:
                once = timed_with_least(engine, panel_queries(now, span)[panel["title"]], runs)
            times[label][panel["title"]] = once
    return times


def storage(connection: sa.Connection, refresh_every: timedelta) -> list[dict]:
    """Per tier: rows, bytes per row (table, indexes, TOAST; the buckets' table shared by its rows) and
    bytes per year of history at the refresh rate, with the tier's retention and kept a whole year."""
    def row_bytes(table: str) -> tuple[int, float]:
        rows, total = connection.execute(sa.text(
            f"select count(*), pg_total_relation_size('{table}') from {table}")).one()
        return rows, total / rows

    raw_rows, raw_bytes = row_bytes("flywheel.snapshots")
    bucket_rows, bucket_bytes = row_bytes("flywheel.history_buckets")
    found = [("raw", refresh_every, retention(connection, "history_raw_retention"), raw_rows, raw_bytes)]
    for width, kept in tiers(connection):
        rows = connection.execute(sa.text("select count(*) from flywheel.history_buckets where bucket_width = :width"),
                                  {"width": width}).scalar_one()
        found.append((_duration(width), width, kept, rows, bucket_bytes))
    return [{"tier": tier, "rows": rows, "bytes_per_row": per_row, "rows_per_year": YEAR / every, "kept": kept,
             "bytes_kept": per_row * (min(kept, YEAR) / every), "bytes_whole_year": per_row * (YEAR / every)}
            for tier, every, kept, rows, per_row in found]


def _duration(width: timedelta) -> str:
    return f"{width // timedelta(hours=1)} h" if width >= timedelta(hours=1) else f"{width // timedelta(minutes=1)} min"


def settings_copy_bytes(connection: sa.Connection) -> int:
    """What each snapshot carried before release 0006: the settings as jsonb."""
    return connection.execute(sa.text(
        "select pg_column_size(settings) from flywheel.settings_versions order by settings_version_id desc limit 1"
    )).scalar_one()


def main() -> None:
    import dataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="S", choices=list(generate.SIZES))
    parser.add_argument("--postgres", choices=dataset.POSTGRES_KINDS, default="embedded")
    parser.add_argument("--refresh-seconds", type=float, default=5.0, help="the refresh rate the history is built at")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--state", choices=dataset.STATES, default="realistic",
                        help="platform state of the data set; the panels read only the history, so any will do "
                             "(default realistic, the other benchmarks' data set)")
    options = parser.parse_args()
    refresh_every = timedelta(seconds=options.refresh_seconds)

    say = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    servers = dataset.servers(options.postgres)
    url = dataset.ensure(servers.postgres_url, options.scale, say, state=options.state)
    engine = db.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        started = time.perf_counter()
        with engine.begin() as connection:
            connection.execute(sa.text("select flywheel.refresh(full => true)"))
            add_history(connection, refresh_every)
        with psycopg.connect(dataset.libpq(url), autocommit=True) as connection:
            # Rewritten, so that the bytes per row are those of the rows, not of the ones deleted before.
            connection.execute("vacuum (full, analyze) flywheel.snapshots, flywheel.history_buckets,"
                               " flywheel.refresh_log")
        with engine.connect() as connection:
            now = connection.execute(sa.text("select now()")).scalar_one()
            found = storage(connection, refresh_every)
            copy_bytes = settings_copy_bytes(connection)
            version = connection.execute(sa.text("show server_version")).scalar_one()
        print(f"PostgreSQL {version} ({options.postgres}), scale {options.scale}, history at one refresh every "
              f"{options.refresh_seconds:g} s, set up in {time.perf_counter() - started:.0f} s\n")
        report(engine, now, options.runs)
        print()
        report_storage(found, copy_bytes, options.refresh_seconds)
    finally:
        engine.dispose()


def report(engine: sa.Engine, now, runs: int) -> None:
    baseline, least_baseline, _ = timed_with_least(engine, BASELINE, runs)
    times = panel_times(engine, now, runs)
    labels = list(RANGES)
    header = f"{'panel: database ms, median of ' + str(runs):<40}" + "".join(f" {label:>8} {'rows':>6}" for label in labels)
    print(header)
    print("-" * len(header))
    print(f"{'baseline: flywheel.summary':<40}" + "".join(f" {baseline:>8.2f} {1:>6}" for _ in labels))
    for title in times[labels[0]]:
        print(f"{title[:40]:<40}" + "".join(f" {times[label][title][0]:>8.2f} {times[label][title][2]:>6}"
                                           for label in labels))
    series = [title for title in times[labels[0]] if "flywheel.history(" in _sql(title)]
    for name, pick in (("median", 0), ("least", 1)):
        print(f"{'whole dashboard (sum), ' + name:<40}" + "".join(
            f" {sum(panel[pick] for panel in times[label].values()):>8.2f} {'':>6}" for label in labels))
        print(f"{'slowest time-series panel, ' + name:<40}" + "".join(
            f" {max(times[label][title][pick] for title in series):>8.2f} {'':>6}" for label in labels))
    print(f"baseline least {least_baseline:.2f} ms; $__interval: "
          + ", ".join(f"{label} {_interval_text(RANGES[label])}" for label in labels))


def _sql(title: str) -> str:
    return next(panel["targets"][0]["rawSql"] for panel in _panels() if panel["title"] == title)


def _interval_text(span: timedelta) -> str:
    return str(max(round_interval(span / PANEL_WIDTH_PX), timedelta(seconds=5)))


def report_storage(found: list[dict], copy_bytes: int, refresh_seconds: float) -> None:
    header = f"{'tier':<8} {'rows':>10} {'B/row':>7} {'rows/year':>11} {'kept':>10} {'MB kept':>9} {'MB/year kept':>13}"
    print(header)
    print("-" * len(header))
    for tier in found:
        print(f"{tier['tier']:<8} {tier['rows']:>10,} {tier['bytes_per_row']:>7.0f} {tier['rows_per_year']:>11,.0f} "
              f"{tier['kept'].days:>8} d {tier['bytes_kept'] / 1e6:>9.1f} {tier['bytes_whole_year'] / 1e6:>13.1f}")
    kept = sum(tier["bytes_kept"] for tier in found)
    whole = sum(tier["bytes_whole_year"] for tier in found if tier["tier"] != "raw")
    print(f"a year of history at one refresh every {refresh_seconds:g} s, all tiers with the default retentions: "
          f"{kept / 1e6:.1f} MB; with every tier but the raw one kept a whole year: "
          f"{(whole + found[0]['bytes_kept']) / 1e6:.1f} MB")
    print(f"each snapshot no longer copies the settings: {copy_bytes} bytes of jsonb a row before release 0006")


if __name__ == "__main__":
    main()
