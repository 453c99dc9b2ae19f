"""Sample platform data, built inside PostgreSQL with set-based SQL.

The demo needs weeks of realistic incidents, executions and knowledge entries; the benchmarks need
millions. Every row is made by ``insert ... select ... from generate_series(...)`` in chunks (a
progress bar advances per chunk), with a seeded ``random()``, so the same options give the same data.
Playbooks live in Redis and are written by :mod:`flywheel_sync.sync`'s sample loader.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from . import db
from .paths import REFERENCE_SCHEMA

CHUNK_ROWS = 50_000


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
                when r_status < 0.6 then 'resolved'
                else 'closed' end as status
    from (
        select n, random() as r_name, random() as r_type, random() as r_outcome, random() as r_status,
               :anchor - cast(:span as interval) * power(random(), 1.6) as created_at
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
       :anchor - cast(:span as interval) * power(random(), 1.6)
from (select n, random() as r from generate_series(cast(:first_id as bigint), cast(:last_id as bigint)) as n) as drawn
"""

KNOWLEDGE_SQL = """
insert into {schema}.knowledge_entries (title, embedding, created_at)
select 'Runbook note ' || n,
       case when age > interval '6 hours' or random() < 0.5
            then array_fill(random()::real, array[cast(:dim as integer)]) end,
       created_at
from (
    select n, created_at, :anchor - created_at as age
    from (select n, :anchor - cast(:span as interval) * power(random(), 1.6) as created_at
          from generate_series(cast(:first_id as bigint), cast(:last_id as bigint)) as n) as drawn
) as entry
"""


def create_reference_schema(connection: Connection, schema: str = "public") -> None:
    """Create the platform's tables (the reference copy) in ``schema`` when they are absent."""
    quoted = connection.dialect.identifier_preparer.quote(schema)
    connection.execute(sa.text(f"create schema if not exists {quoted}"))
    connection.execute(sa.text(f"set local search_path = {quoted}"))
    connection.exec_driver_sql(REFERENCE_SCHEMA.read_text(), execution_options={"no_parameters": True})
    connection.execute(sa.text("set local search_path = default"))


def _chunks(total: int, first: int) -> list[tuple[int, int]]:
    return [(start, min(start + CHUNK_ROWS - 1, first + total - 1))
            for start in range(first, first + total, CHUNK_ROWS)]


def generate(
    engine: Engine,
    size: Size,
    schema: str = "public",
    seed: float = 0.42,
    progress: Callable[[int], None] = lambda rows: None,
) -> dict[str, int]:
    """Append ``size`` rows to the platform's tables in ``schema`` (created when absent).

    Calls ``progress(rows)`` after each chunk; returns the rows added per table.
    """
    quoted = engine.dialect.identifier_preparer.quote(schema)
    span = f"{size.days} days"
    with db.connect(engine) as connection:
        create_reference_schema(connection, schema)
        first_incident = 1 + connection.execute(sa.text(f"select count(*) from {quoted}.incidents")).scalar_one()
        connection.execute(sa.text("select setseed(:seed)"), {"seed": seed})
        anchor = connection.execute(sa.text("select now()")).scalar_one()
        common = {"anchor": anchor, "span": span, "alertnames": ALERTNAMES,
                  "incidents": first_incident + size.incidents - 1, "dim": size.embedding_dim}
        for template, total, first in (
            (INCIDENTS_SQL, size.incidents, first_incident),
            (EXECUTIONS_SQL, size.executions, 1),
            (KNOWLEDGE_SQL, size.knowledge_entries, 1),
        ):
            statement = sa.text(template.replace("{schema}", quoted))
            used = {name: value for name, value in common.items() if f":{name}" in template}
            for first_id, last_id in _chunks(total, first):
                connection.execute(statement, {**used, "first_id": first_id, "last_id": last_id})
                progress(last_id - first_id + 1)
        connection.execute(sa.text(f"analyze {quoted}.incidents, {quoted}.auto_repair_executions,"
                                   f" {quoted}.knowledge_entries"))
    return {"incidents": size.incidents, "auto_repair_executions": size.executions,
            "knowledge_entries": size.knowledge_entries}
