"""Sample platform data, built inside PostgreSQL with set-based SQL.

The demo needs weeks of realistic incidents, executions and knowledge entries; the benchmarks need
millions. Every row is made by ``insert ... select ... from generate_series(...)`` in chunks (a
progress bar advances per chunk), with a seeded ``random()``, so the same options give the same data.
Playbooks live in Redis and are written by :mod:`flywheel_sync.mirror.sync_pass`'s sample loader.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..database import db
from ..paths import REFERENCE_SCHEMA, REFERENCE_SCHEMA_PARTITIONED

CHUNK_ROWS = 50_000
LAYOUTS = ("plain", "partitioned")
# pg_partman's default premake: four months of partitions ahead of the current one.
PREMADE_MONTHS = 4
SOURCE_TABLES = ("incidents", "auto_repair_executions", "knowledge_entries")
# The platform's states: normal (every size's traffic grows with its rows), stuck (a fifth of all
# incidents left investigating or mitigating, for months) and realistic (the last week's traffic of
# every size at the same rate, so a larger size has more history, not more active rows).
STATES = ("normal", "stuck", "realistic")
STUCK_FRACTION = 0.2
# The realistic state's recent stretch: a week, so every window of the metrics (at most 7 days) lies
# inside it, at the average day of scale S (274 incidents and executions, 27 knowledge entries);
# a size smaller than S keeps its own average day.
REALISTIC_RECENT_DAYS = 7
# Half the knowledge entries younger than this wait for their embedding (6 hours otherwise): a
# backlog of a few dozen entries at the recent week's rate.
REALISTIC_BACKLOG_AGE = "2 days"


@dataclass(frozen=True)
class Size:
    incidents: int
    executions: int
    knowledge_entries: int
    playbooks: int
    days: int
    embedding_dim: int


SIZES = {
    "demo": Size(incidents=6_000, executions=4_000, knowledge_entries=900, playbooks=36, days=42, embedding_dim=16),
    "S": Size(incidents=100_000, executions=100_000, knowledge_entries=10_000, playbooks=1_000, days=365, embedding_dim=384),
    "M": Size(incidents=1_000_000, executions=1_000_000, knowledge_entries=100_000, playbooks=10_000, days=730, embedding_dim=384),
    "L": Size(incidents=10_000_000, executions=10_000_000, knowledge_entries=1_000_000, playbooks=100_000, days=1095, embedding_dim=384),
}

ALERTNAMES = [
    "HighCPU", "HighMemory", "DiskFull", "PodCrashLooping", "NodeNotReady", "HighLatency", "ErrorRateHigh",
    "CertificateExpiring", "ReplicationLag", "QueueBacklog", "OOMKilled", "TargetDown", "SlowQueries",
    "ConnectionPoolExhausted", "DNSFailures",
]

# Each statement makes rows first_id..last_id. Times fall over `days` days before anchor, denser
# towards the present (a uniform draw to the power 1.6); the recent ones are the active, unvectorized ones.
# Realistic: rows numbered from recent_from on fall uniformly over the last recent_span and are the
# last inserted, as on a platform; the others fall uniformly (history_power 1) over the days before.
INCIDENTS_SQL = """
insert into {schema}.incidents (incident_id, alertname, status, notification_type, outcome, created_at, updated_at)
select 'INC-' || n,
       case when r_name < 0.02 then null when r_name < 0.025 then '  '
            else (cast(:alertnames as text[]))[1 + floor(r_name * 1e6)::int % cardinality(cast(:alertnames as text[]))] end,
       status,
       'TYPE-' || (1 + floor(r_type * 4)::int),
       case when status in ('resolved', 'closed') then
           jsonb_build_object('execution_success', r_outcome < 0.45, 'playbook_id', 'PB-' || (1 + n % 40))
           || case when r_outcome between 0.45 and 0.55 then '{"verification_skipped": true}'::jsonb else '{}' end
       end,
       created_at,
       created_at + interval '5 minutes'
from (
    select n, r_name, r_type, r_outcome, created_at,
           case when age < interval '2 hours' and r_status < 0.5 then 'investigating'
                when age < interval '2 hours' and r_status < 0.8 then 'mitigating'
                when age < interval '3 days' and r_status < 0.01 then 'investigating'
                when r_status >= 1 - cast(:stuck_fraction as float8) / 2 then 'investigating'
                when r_status >= 1 - cast(:stuck_fraction as float8) then 'mitigating'
                when r_status < 0.6 then 'resolved'
                else 'closed' end as status
    from (
        select n, random() as r_name, random() as r_type, random() as r_outcome, random() as r_status,
               case when n >= cast(:recent_from as bigint) then :anchor - cast(:recent_span as interval) * random()
                    else :anchor - cast(:recent_span as interval)
                         - (cast(:span as interval) - cast(:recent_span as interval)) * power(random(), cast(:history_power as float8)) end as created_at
        from generate_series(cast(:first_id as bigint), cast(:last_id as bigint)) as n
    ) as drawn
    cross join lateral (select :anchor - drawn.created_at as age) as aged
) as incident
"""

EXECUTIONS_SQL = """
insert into {schema}.auto_repair_executions (incident_id, playbook_id, success, created_at)
select 'INC-' || (1 + floor(random() * :incidents)::bigint),
       'PB-' || (1 + n % 40),
       case when r < 0.42 then true when r < 0.92 then false end,
       case when n >= cast(:recent_from as bigint) then :anchor - cast(:recent_span as interval) * random()
                    else :anchor - cast(:recent_span as interval)
                         - (cast(:span as interval) - cast(:recent_span as interval)) * power(random(), cast(:history_power as float8)) end
from (select n, random() as r from generate_series(cast(:first_id as bigint), cast(:last_id as bigint)) as n) as drawn
"""

KNOWLEDGE_SQL = """
insert into {schema}.knowledge_entries (title, embedding, created_at)
select 'Runbook note ' || n,
       case when age > cast(:backlog_age as interval) or random() < 0.5
            then array_fill(random()::real, array[cast(:dim as integer)]) end,
       created_at
from (
    select n, created_at, :anchor - created_at as age
    from (select n, case when n >= cast(:recent_from as bigint) then :anchor - cast(:recent_span as interval) * random()
                    else :anchor - cast(:recent_span as interval)
                         - (cast(:span as interval) - cast(:recent_span as interval)) * power(random(), cast(:history_power as float8)) end as created_at
          from generate_series(cast(:first_id as bigint), cast(:last_id as bigint)) as n) as drawn
) as entry
"""


def create_reference_schema(connection: Connection, schema: str = "public", layout: str = "plain",
                            months: tuple[date, date] | None = None) -> None:
    """Create the platform's tables (the reference copy) in ``schema`` when they are absent.

    ``layout`` "partitioned" makes them range-partitioned by created_at, a partition a month from the
    first of ``months`` to the last (default: the last 13 months and PREMADE_MONTHS ahead) and a
    default partition, as pg_partman keeps a platform's event tables.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    quoted = connection.dialect.identifier_preparer.quote(schema)
    connection.execute(sa.text(f"create schema if not exists {quoted}"))
    connection.execute(sa.text(f"set local search_path = {quoted}"))
    source = REFERENCE_SCHEMA_PARTITIONED if layout == "partitioned" else REFERENCE_SCHEMA
    connection.exec_driver_sql(source.read_text(), execution_options={"no_parameters": True})
    connection.execute(sa.text("set local search_path = default"))
    if layout == "partitioned":
        today = datetime.now().date()
        first, last = months or (add_months(today, -13), add_months(today, PREMADE_MONTHS))
        create_monthly_partitions(connection, schema, first, last)


def add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def create_monthly_partitions(connection: Connection, schema: str, first: date, last: date) -> list[str]:
    """A partition a month (UTC month boundaries) of each source table, from first's month to last's,
    named as pg_partman names them (incidents_p2026_11); returns the partitions made."""
    quote = connection.dialect.identifier_preparer.quote
    made = []
    month = add_months(first, 0)
    while month <= last:
        following = add_months(month, 1)
        for table in SOURCE_TABLES:
            partition = f"{table}_p{month:%Y_%m}"
            connection.execute(sa.text(
                f"create table if not exists {quote(schema)}.{partition} partition of {quote(schema)}.{table}"
                f" for values from ('{month.isoformat()} 00:00+00') to ('{following.isoformat()} 00:00+00')"))
            made.append(partition)
        month = following
    return made


def _chunks(total: int, first: int) -> list[tuple[int, int]]:
    return [(start, min(start + CHUNK_ROWS - 1, first + total - 1))
            for start in range(first, first + total, CHUNK_ROWS)]


def realistic_recent_rows(size: Size) -> dict[str, int]:
    """The rows per source table that the realistic state puts into its recent week: scale S's
    average day (or ``size``'s own, when smaller) times REALISTIC_RECENT_DAYS, whatever the size."""
    reference = SIZES["S"]
    rows = {}
    for table, total, reference_total in (
        ("incidents", size.incidents, reference.incidents),
        ("auto_repair_executions", size.executions, reference.executions),
        ("knowledge_entries", size.knowledge_entries, reference.knowledge_entries),
    ):
        per_day = min(total / size.days, reference_total / reference.days)
        rows[table] = min(total, round(per_day * REALISTIC_RECENT_DAYS))
    return rows


def generate(
    engine: Engine,
    size: Size,
    schema: str = "public",
    seed: float = 0.42,
    progress: Callable[[int], None] = lambda rows: None,
    layout: str = "plain",
    state: str = "normal",
) -> dict[str, int]:
    """Append ``size`` rows to the platform's tables in ``schema`` (created when absent, in ``layout``:
    plain or partitioned, see create_reference_schema, with partitions for the whole span).

    ``state`` "stuck" leaves a fifth of all incidents active (investigating or mitigating), however
    old: a platform whose incidents get stuck. "realistic" gives the last REALISTIC_RECENT_DAYS the
    same traffic at every size (realistic_recent_rows, stamped uniformly over the week, inserted
    last) and spreads the rest uniformly over the days before: the active incidents, the unvectorized backlog and
    the last day's arrivals are then about the same at L as at S, and only history grows. "normal"
    stamps every row densest towards the present, so those grow with the size. Calls
    ``progress(rows)`` after each chunk; returns the rows added per table.
    """
    if state not in STATES:
        raise ValueError(f"state must be one of {', '.join(STATES)}, not {state!r}")
    quoted = engine.dialect.identifier_preparer.quote(schema)
    span = f"{size.days} days"
    recent = realistic_recent_rows(size) if state == "realistic" else dict.fromkeys(SOURCE_TABLES, 0)
    recent_span = f"{REALISTIC_RECENT_DAYS if state == 'realistic' else 0} days"
    with db.connect(engine) as connection:
        anchor = connection.execute(sa.text("select now()")).scalar_one()
        today = anchor.date()
        create_reference_schema(connection, schema, layout,
                                (today - timedelta(days=size.days + 1), add_months(today, PREMADE_MONTHS)))
        first_incident = 1 + connection.execute(sa.text(f"select count(*) from {quoted}.incidents")).scalar_one()
        connection.execute(sa.text("select setseed(:seed)"), {"seed": seed})
        common = {"anchor": anchor, "span": span, "recent_span": recent_span, "alertnames": ALERTNAMES,
                  "history_power": 1.0 if state == "realistic" else 1.6,
                  "backlog_age": REALISTIC_BACKLOG_AGE if state == "realistic" else "6 hours",
                  "incidents": first_incident + size.incidents - 1, "dim": size.embedding_dim,
                  "stuck_fraction": STUCK_FRACTION if state == "stuck" else 0.0}
        for table, template, total, first in (
            ("incidents", INCIDENTS_SQL, size.incidents, first_incident),
            ("auto_repair_executions", EXECUTIONS_SQL, size.executions, 1),
            ("knowledge_entries", KNOWLEDGE_SQL, size.knowledge_entries, 1),
        ):
            statement = sa.text(template.replace("{schema}", quoted))
            used = {name: value for name, value in common.items() if f":{name}" in template}
            recent_from = first + total - recent[table]
            for first_id, last_id in _chunks(total, first):
                connection.execute(statement, {**used, "recent_from": recent_from,
                                               "first_id": first_id, "last_id": last_id})
                progress(last_id - first_id + 1)
        connection.execute(sa.text(f"analyze {quoted}.incidents, {quoted}.auto_repair_executions,"
                                   f" {quoted}.knowledge_entries"))
    return {"incidents": size.incidents, "auto_repair_executions": size.executions,
            "knowledge_entries": size.knowledge_entries}
