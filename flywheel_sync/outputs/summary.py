"""Reading the computed metrics: the summary row with its targets, and the three output shapes that
the SQL functions produce (Summary JSON, Flywheel JSON, Prometheus text)."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg.errors
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ..database import db
from ..errors import NotRefreshed


@dataclass(frozen=True)
class TargetRow:
    metric: str
    value: float | None
    comparison: str
    target: float
    met: bool | None


def _call(engine: Engine, sql: str, parameters: dict | None = None):
    try:
        with db.connect(engine) as connection:
            db.require_schema(connection)
            return connection.execute(sa.text(sql), parameters or {}).scalar_one()
    except sa.exc.DBAPIError as exc:
        if isinstance(exc.orig, psycopg.errors.NoDataFound):
            raise NotRefreshed(
                "the metrics have not been computed in this database yet: run `flywheel-sync refresh` first"
            ) from exc
        raise


def summary_json(engine: Engine) -> dict:
    return _call(engine, "select flywheel.summary_json()")


def flywheel_json(engine: Engine) -> dict:
    return _call(engine, "select flywheel.flywheel_json()")


def prometheus_text(engine: Engine, with_timestamps: bool = False) -> str:
    return _call(engine, "select flywheel.prometheus_text(:stamps)", {"stamps": with_timestamps})


def targets(engine: Engine) -> list[TargetRow]:
    with db.connect(engine) as connection:
        db.require_schema(connection)
        rows = connection.execute(sa.text(
            "select metric, value, comparison, target, met from flywheel.summary_targets"
        ))
        return [TargetRow(*row) for row in rows]


def _format(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


# The order of metrics.md: the targeted metrics first.
DISPLAY_ORDER = (
    "playbook_count", "execution_success_rate", "km_unvectorized_count", "km_vectorized_rate",
    "alertname_null_rate", "incidents_stuck", "type4_count", "today_processed", "flywheel_conversions_today",
    "count_1h", "execution_success_today", "playbooks_invalid",
)


def render(summary: dict, target_rows: list[TargetRow]) -> str:
    """The summary as a readable table: each metric, its target and whether it is met."""
    by_metric = {row.metric: row for row in target_rows}
    lines = []
    width = max(len(key) for key in DISPLAY_ORDER)
    for key in DISPLAY_ORDER:
        value = summary[key]
        line = f"{key.ljust(width)}  {_format(value):>10}"
        target = by_metric.get(key)
        if target is not None:
            verdict = {True: "met", False: "NOT MET", None: "no verdict"}[target.met]
            shown = f"{target.target:g}"
            line += f"   target {target.comparison} {shown:<5} {verdict}"
        if key == "execution_success_rate":
            line += (f"   (source {summary['execution_success_rate_source']},"
                     f" sample {summary['execution_success_sample']})")
        lines.append(line.rstrip())
    lines.append(f"{'computed_at'.ljust(width)}  {summary['computed_at']}")
    return "\n".join(lines)
