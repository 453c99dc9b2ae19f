"""How long each Grafana panel's query takes, as the dashboard runs it, on a database with history.

Creates its own database on the server (flywheel_bench_grafana_*, dropped at the end), fills the
platform's tables with `flywheel-sync generate --size SCALE`, migrates, refreshes, then adds
--days of synthetic history at one refresh a minute (snapshots and refresh_log rows, copies of the
real refresh shifted in time). Each panel's SQL is expanded with Grafana's macros
(tests/grafana_macros.py) for the last 7 days and for the whole history, with $__interval as Grafana
picks it for about 1,000 points, and run --runs times. The baseline is reading flywheel.summary
(the cheapest panel) in the same run; machine load shifts every number, the ratios less.

    .venv/bin/python bench/grafana_panels.py --database-url postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flywheel_sync import db, generate, grafana, migrate  # noqa: E402
from tests.grafana_macros import TimeRange, expand, parse_interval  # noqa: E402

BASELINE = "select * from flywheel.summary"

HISTORY = """
insert into flywheel.snapshots (computed_at, timezone, playbook_count, playbooks_invalid, execution_success_rate,
    execution_success_rate_source, execution_success_sample, executions_24h, executions_7d, km_total,
    km_unvectorized_count, km_vectorized_rate, km_created_24h, flywheel_conversions_today, incidents_total,
    incidents_alertname_missing, alertname_null_rate, incidents_investigating, incidents_mitigating,
    incidents_stuck, type4_count, today_processed, count_1h, execution_success_today, settings)
select s.computed_at - minutes * interval '1 minute', timezone, playbook_count, playbooks_invalid,
    execution_success_rate, execution_success_rate_source, execution_success_sample, executions_24h, executions_7d,
    km_total, km_unvectorized_count, km_vectorized_rate, km_created_24h, flywheel_conversions_today,
    incidents_total, incidents_alertname_missing, alertname_null_rate, incidents_investigating,
    incidents_mitigating, incidents_stuck, type4_count, today_processed, count_1h, execution_success_today, settings
from (select * from flywheel.snapshots order by snapshot_id desc limit 1) as s
cross join generate_series(1, :minutes) as minutes;
insert into flywheel.refresh_log (started_at, finished_at, computed_at, status, steps)
select started_at - minutes * interval '1 minute', finished_at - minutes * interval '1 minute',
       computed_at - minutes * interval '1 minute', status, steps
from (select * from flywheel.refresh_log order by refresh_id desc limit 1) as newest
cross join generate_series(1, :minutes) as minutes;
analyze flywheel.snapshots, flywheel.refresh_log;
"""


def grafana_interval(span: timedelta, panel: dict) -> timedelta:
    """About 1,000 points over the span, never below the panel's minimum interval."""
    wanted = max(span / 1000, timedelta(seconds=1))
    return max(wanted, parse_interval(panel["interval"])) if "interval" in panel else wanted


def panel_queries(now, span: timedelta) -> dict[str, str]:
    """Each panel's SQL as Grafana sends it for the span up to now (the panels without a range once)."""
    time_range = TimeRange(now - span, now)
    return {panel["title"]: expand(panel["targets"][0]["rawSql"], time_range,
                                   grafana_interval(span, panel))
            for panel in grafana.dashboard()["panels"] if panel["type"] != "row"}


def timed(engine: sa.Engine, sql: str, runs: int) -> tuple[float, int]:
    durations = []
    with engine.connect() as connection:
        for _ in range(runs):
            started = time.perf_counter()
            rows = len(connection.execute(sa.text(sql.replace(":", r"\:"))).all())
            durations.append((time.perf_counter() - started) * 1000)
    return statistics.median(durations), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True, help="server URL of a user who may create databases")
    parser.add_argument("--scale", default="S", choices=list(generate.SIZES))
    parser.add_argument("--days", type=int, default=90, help="days of history at one refresh a minute")
    parser.add_argument("--runs", type=int, default=5)
    options = parser.parse_args()

    name = f"flywheel_bench_grafana_{uuid.uuid4().hex[:8]}"
    admin = db.create_engine(options.database_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as connection:
        connection.execute(sa.text(f"create database {name}"))
    url = db.parse_url(options.database_url).set(database=name)
    engine = db.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        started = time.perf_counter()
        generate.generate(engine, generate.SIZES[options.scale])
        migrate.upgrade(engine)
        with engine.begin() as connection:
            connection.execute(sa.text("select flywheel.refresh()"))
            for statement in filter(str.strip, HISTORY.split(";")):
                connection.execute(sa.text(statement), {"minutes": options.days * 1440})
            now = connection.execute(sa.text("select now()")).scalar_one()
            snapshots = connection.execute(sa.text("select count(*) from flywheel.snapshots")).scalar_one()
        print(f"scale {options.scale}, {snapshots:,} snapshots, set up in {time.perf_counter() - started:.0f} s\n")
        report(engine, now, options)
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.execute(sa.text(f"drop database if exists {name} with (force)"))
        admin.dispose()


def report(engine: sa.Engine, now, options) -> None:
    baseline, _ = timed(engine, BASELINE, options.runs)
    ranges = {"7d": TimeRange(now - timedelta(days=7), now),
              f"{options.days}d": TimeRange(now - timedelta(days=options.days), now)}
    header = f"{'panel':<40} {'range':>5} {'ms':>9} {'x base':>8} {'rows':>6}"
    print(header)
    print("-" * len(header))
    print(f"{'baseline: flywheel.summary':<40} {'':>5} {baseline:>9.2f} {1:>8.1f} {1:>6}")
    for panel in (panel for panel in grafana.dashboard()["panels"] if panel["type"] != "row"):
        sql = panel["targets"][0]["rawSql"]
        uses_range = "$__" in sql
        for label, time_range in ranges.items() if uses_range else list(ranges.items())[:1]:
            interval = grafana_interval(time_range.end - time_range.start, panel)
            ms, rows = timed(engine, expand(sql, time_range, interval), options.runs)
            print(f"{panel['title'][:40]:<40} {label if uses_range else '':>5} {ms:>9.2f} {ms / baseline:>8.1f} {rows:>6}")


if __name__ == "__main__":
    main()
