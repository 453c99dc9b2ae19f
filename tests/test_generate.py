"""The sample-data generator's states: what a larger size adds in each (flywheel_sync.local.generate)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from flywheel_sync.database import db
from flywheel_sync.local import generate

# Two sizes whose average day exceeds scale S's, with ten times the rows over three times the days:
# in the realistic state both get S's week of traffic, and the larger one ten times the history.
SMALLER = generate.Size(incidents=4_000, executions=4_000, knowledge_entries=400, playbooks=0, days=10,
                        embedding_dim=4)
LARGER = generate.Size(incidents=40_000, executions=40_000, knowledge_entries=4_000, playbooks=0, days=30,
                       embedding_dim=4)

STATE_OF_THE_PLATFORM = """
select (select count(*) from {schema}.incidents where status in ('investigating', 'mitigating')) as active,
       (select count(*) from {schema}.knowledge_entries where embedding is null) as backlog,
       (select count(*) from {schema}.incidents where created_at > now() - interval '1 day') as incidents_last_day,
       (select count(*) from {schema}.auto_repair_executions where created_at > now() - interval '1 day')
           as executions_last_day,
       (select count(*) from {schema}.knowledge_entries where created_at > now() - interval '1 day')
           as knowledge_last_day,
       (select count(*) from {schema}.incidents where created_at <= now() - interval '7 days') as incidents_history,
       (select round(extract(epoch from max(created_at) - min(created_at)) / 86400)::int from {schema}.incidents)
           as days_of_history
"""


@pytest.fixture
def source_engine(empty_database_url):
    engine = db.create_engine(empty_database_url, poolclass=sa.pool.NullPool)
    yield engine
    engine.dispose()


def platform_state(engine: sa.Engine, schema: str) -> dict:
    with engine.connect() as connection:
        return dict(connection.execute(sa.text(STATE_OF_THE_PLATFORM.format(schema=schema))).mappings().one())


def test_realistic_state_grows_history_but_not_the_active_set_backlog_or_last_day(source_engine):
    generate.generate(source_engine, SMALLER, schema="smaller", state="realistic")
    generate.generate(source_engine, LARGER, schema="larger", state="realistic")
    smaller, larger = platform_state(source_engine, "smaller"), platform_state(source_engine, "larger")

    for measure in ("active", "backlog", "incidents_last_day", "executions_last_day", "knowledge_last_day"):
        assert smaller[measure] > 0, measure
        assert 0.5 <= larger[measure] / smaller[measure] <= 2, (measure, smaller[measure], larger[measure])
    # Scale S's average day, whatever the size: 274 incidents and executions, 27 knowledge entries.
    assert 200 <= larger["incidents_last_day"] <= 350
    assert larger["incidents_history"] >= 9 * smaller["incidents_history"]
    assert (smaller["days_of_history"], larger["days_of_history"]) == (10, 30)


def test_normal_state_grows_the_last_day_with_the_size(source_engine):
    generate.generate(source_engine, SMALLER, schema="smaller")
    generate.generate(source_engine, LARGER, schema="larger")
    smaller, larger = platform_state(source_engine, "smaller"), platform_state(source_engine, "larger")

    assert larger["incidents_last_day"] >= 3 * smaller["incidents_last_day"]


def test_realistic_state_is_the_same_data_for_the_same_seed(source_engine):
    for schema in ("first", "second"):
        generate.generate(source_engine, SMALLER, schema=schema, state="realistic", seed=0.7)
    # Times are stamped back from the moment each ran, so compare them relative to the newest row.
    relative = """
        select incident_id, alertname, status, notification_type, outcome,
               created_at - (select max(created_at) from {schema}.incidents) as age
        from {schema}.incidents
    """
    first, second = relative.format(schema="first"), relative.format(schema="second")
    with source_engine.connect() as connection:
        differing = connection.execute(sa.text(
            f"select count(*) from ((({first}) except ({second})) union all (({second}) except ({first})))"
            f" as differing"
        )).scalar_one()
        rows = connection.execute(sa.text("select count(*) from second.incidents")).scalar_one()
    assert (differing, rows) == (0, SMALLER.incidents)


def test_an_unknown_state_is_refused(source_engine):
    with pytest.raises(ValueError, match="state must be one of normal, stuck, realistic"):
        generate.generate(source_engine, SMALLER, state="busy")
