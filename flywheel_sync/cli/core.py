"""Commands of the core: migrate, downgrade, check, settings, refresh, summary, generate."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from ..errors import MigratedWithWarnings
from .options import as_json, database_url, echo_json, echo_table, engine_for, with_engine

# The names of generate.SIZES and generate.STATES, here so that --help needs no SQLAlchemy (tests keep them equal).
SIZE_NAMES = ("demo", "S", "M", "L")
STATE_NAMES = ("normal", "stuck", "realistic")


@click.command()
@click.option("--sql", "offline", is_flag=True,
              help="Print the SQL instead of running it (alembic's offline mode), for a DBA to review.")
@click.option("--revision", default="head", show_default=True, help="Revision to upgrade to.")
@click.option("--from", "start", metavar="REVISION",
              help="With --sql: the revision the database is at now (default: nothing installed).")
@click.option("--strict", is_flag=True,
              help="Exit 3 when the migration went through but left a warning (for scripts that go on to refresh).")
@database_url
def migrate(database_url: str | None, offline: bool, revision: str, start: str | None, strict: bool) -> None:
    """Install or upgrade schema flywheel (alembic upgrade).

    Creates schema flywheel, its tables, views and functions, and the roles flywheel_reader,
    flywheel_refresher and flywheel_owner when they are absent; grants flywheel_owner (which owns the
    refresh) SELECT on the platform's tables where this role may. Changes nothing else of the
    platform's. Refuses up front, saying what a superuser must grant, when this role lacks a
    privilege it needs (docs/migrations.md), and on a standby. --sql from nothing prints the end
    state, each object once; with --from, only the upgrade from that revision.

    \b
    Example:
        flywheel-sync migrate
        flywheel-sync migrate --sql > flywheel.sql     # review, then psql -f flywheel.sql
    """
    from ..database import migrate as migrations

    if offline:
        click.echo(migrations.upgrade_sql(revision, start), nl=False)
        return
    with engine_for(database_url) as engine:
        before = migrations.current_revision(engine)
        warnings = migrations.upgrade(engine, revision)
        after = migrations.current_revision(engine)
    if before == after:
        click.echo(f"schema flywheel is already at revision {after}")
    else:
        click.echo(f"schema flywheel upgraded from {before or 'nothing'} to revision {after}")
    if not warnings:
        return
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    counted = f"{len(warnings)} warning" + ("s" if len(warnings) > 1 else "")
    if strict:
        raise MigratedWithWarnings(f"schema flywheel is at revision {after}, with {counted} above: run what "
                                   f"{'they say' if len(warnings) > 1 else 'it says'}, then migrate again")
    click.echo(f"migrate: {counted} above {'need' if len(warnings) > 1 else 'needs'} action before the refresh "
               "can be trusted (--strict exits 3 on warnings)", err=True)


@click.command()
@click.argument("revision")
@with_engine
def downgrade(engine, revision: str) -> None:
    """Go back to REVISION; `base` removes schema flywheel.

    Downgrading to base drops schema flywheel (snapshots and logs included). The roles
    flywheel_reader, flywheel_refresher and flywheel_owner are kept, with their members and grants,
    so that a new migrate finds the logins as they were; drop them yourself if no database uses them.
    The platform's tables are never touched.

    \b
    Example:
        flywheel-sync downgrade base
    """
    from ..database import check as contract
    from ..database import migrate as migrations

    before = migrations.current_revision(engine)
    migrations.downgrade(engine, revision)
    after = migrations.current_revision(engine)
    click.echo(f"schema flywheel downgraded from {before or 'nothing'} to {after or 'nothing (removed)'}")
    if after is None:
        click.echo(f"roles {', '.join(contract.ROLES[:-1])} and {contract.ROLES[-1]} are kept, with their members "
                   "and grants (a new migrate uses them as they are). They are cluster-wide: only when no other "
                   "database of this cluster has schema flywheel, remove them with "
                   f"DROP ROLE {', '.join(contract.ROLES)};")


@click.command()
@click.option("--source-schema", metavar="SCHEMA",
              help="Schema of the platform's tables [default: the source_schema setting, else public].")
@as_json
@with_engine
def check(engine, source_schema: str | None, as_json: bool) -> None:
    """Check the platform's tables against the source contract.

    Lists every missing table or column, every column of an unusable type, status values the metrics
    do not know (with row counts), and the indexes the refresh wants, with the CREATE INDEX
    CONCURRENTLY statement to run. Exits 1 when the contract is broken, 0 otherwise (suggestions and
    warnings do not fail it).

    \b
    Example:
        flywheel-sync check --source-schema platform
    """
    from ..database import check as contract

    report = contract.check(engine, source_schema)
    if as_json:
        echo_json(report.as_dict())
    else:
        click.echo(contract.render(report))
    if not report.ok:
        raise click.exceptions.Exit(1)


@click.group(invoke_without_command=True)
@as_json
@database_url
@click.pass_context
def settings(context: click.Context, database_url: str | None, as_json: bool) -> None:
    """List the settings (or change one with `settings set`).

    Settings live in the table flywheel.settings; a change takes effect at the next refresh.

    \b
    Example:
        flywheel-sync settings
        flywheel-sync settings set timezone Europe/Berlin
    """
    from ..database import settings as configuration

    if context.invoked_subcommand is not None:
        return
    with engine_for(database_url) as engine:
        rows = configuration.list_settings(engine)
    if as_json:
        echo_json({row.key: row.value for row in rows})
        return
    echo_table(["key", "value", "description"],
               [[row.key, configuration.display(row.value), row.description] for row in rows])


# ignore_unknown_options: a value such as -1 or "-3 days" is the value, not an option.
@settings.command("set", context_settings={"ignore_unknown_options": True})
@click.argument("key")
@click.argument("value")
@with_engine
def settings_set(engine, key: str, value: str) -> None:
    """Set KEY to VALUE (JSON, or plain text for strings).

    A bad value is refused, and the setting keeps its old one.

    \b
    Example:
        flywheel-sync settings set min_sample 20
        flywheel-sync settings set stuck_after "12 hours"
        flywheel-sync settings set mcp_providers '["k8s", "ssh"]'
    """
    from ..database import settings as configuration

    changed = configuration.set_setting(engine, key, value)
    click.echo(f"{changed.key} = {configuration.display(changed.value)} (takes effect at the next refresh)")


@click.command()
@click.option("--as-of", type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S%z"]),
              help="The metrics' clock, e.g. 2026-11-28T16:30:00+08:00 [default: now]. For back-fills and tests.")
@click.option("--full", is_flag=True,
              help="Recompute every rollup from all history and report the drift it corrected.")
@as_json
@database_url
def refresh(database_url: str | None, as_of: datetime | None, full: bool, as_json: bool) -> None:
    """Recompute the metrics from what changed since the last refresh (calls flywheel.refresh()).

    A routine refresh reads only the rows changed since the last one, so its cost follows the
    changes, not the history. --full recomputes everything and records in flywheel.refresh_log the
    drift it corrected (deletes and late changes no watermark sees). A refresh is full by itself
    once a day, the first at or after the full_refresh_at setting (default 03:00 local), so one
    schedule does both; also the first time, after the timezone or source_schema setting changed,
    and while the source lacks incidents.updated_at or an index (flywheel-sync check lists them).
    It says why. One refresh runs at a time: a second one waits up to the refresh_lock_wait
    setting, then fails. Readers are never blocked. Source rows it cannot use (a NULL, duplicated
    or over-long id, a created_at no day can be computed for) are skipped and counted. Every run is
    recorded in flywheel.refresh_log.

    \b
    Example:
        flywheel-sync refresh
        */1 * * * *  flywheel-sync refresh --json >> /var/log/flywheel-refresh.log
        flywheel-sync refresh --full    # now, e.g. after repairing source rows
    """
    from ..database import refresh as refreshing

    result = refreshing.refresh(database_url, as_of, full)
    if as_json:
        echo_json(result.raw)
        return
    echo_table(["step", "rows", "ms"], [[step.name, step.rows, f"{step.ms:.1f}"] for step in result.steps],
               right_align={1, 2})
    click.echo(f"refresh {result.refresh_id} ({result.mode}) ok in {result.total_ms:.1f} ms; "
               f"metrics as of {result.computed_at_local}")
    if result.mode_reason:
        click.echo(f"why: {result.mode_reason}")
    if result.drift:
        click.echo("drift corrected: " + _per_table(result.drift))
    if result.unusable:
        click.echo("source rows skipped, unusable (flywheel-sync check lists them): " + _per_table(result.unusable))


def _per_table(numbers_by_table: dict[str, dict[str, int]]) -> str:
    return "; ".join(f"{table} " + ", ".join(f"{key} {value}" for key, value in numbers.items())
                     for table, numbers in numbers_by_table.items())


@click.command()
@click.option("--json", "shape", flag_value="summary", help="Print the Summary JSON (the old /api/v1/stats/summary).")
@click.option("--flywheel", "shape", flag_value="flywheel", help="Print the Flywheel JSON (the old /api/v1/stats/flywheel).")
@click.option("--prometheus", "shape", flag_value="prometheus", help="Print the Prometheus text exposition.")
@click.option("--with-timestamps", is_flag=True, help="With --prometheus: give each sample the refresh time.")
@click.option("--textfile", type=click.Path(dir_okay=False, path_type=Path), metavar="PATH",
              help="Write the Prometheus text to PATH atomically, without timestamps, for node_exporter's "
                   "textfile collector (PATH ends in .prom).")
@with_engine
def summary(engine, shape: str | None, with_timestamps: bool, textfile: Path | None) -> None:
    """Show the metrics of the last refresh, each with its target.

    \b
    Example:
        flywheel-sync summary
        flywheel-sync summary --json | jq .execution_success_rate
        flywheel-sync summary --prometheus
        flywheel-sync summary --textfile /var/lib/node_exporter/textfile/flywheel.prom
    """
    from ..outputs import summary as results
    from ..outputs import textfile as textfiles

    if textfile is not None:
        if shape or with_timestamps:
            raise click.UsageError("--textfile writes the Prometheus text without timestamps; "
                                   "drop --json, --flywheel, --prometheus and --with-timestamps")
        written = textfiles.write_metrics_textfile(engine, textfile)
        click.echo(f"wrote {written} bytes to {textfile}")
    elif shape == "summary":
        echo_json(results.summary_json(engine))
    elif shape == "flywheel":
        echo_json(results.flywheel_json(engine))
    elif shape == "prometheus":
        click.echo(results.prometheus_text(engine, with_timestamps), nl=False)
    else:
        click.echo(results.render(results.summary_json(engine), results.targets(engine)))


@click.command()
@click.option("--size", type=click.Choice(SIZE_NAMES), default="demo", show_default=True,
              help="How much: demo (weeks, thousands of rows), S (100k incidents), M (1M), L (10M).")
@click.option("--source-schema", default="public", show_default=True, help="Schema to create the tables in.")
@click.option("--seed", type=float, default=0.42, show_default=True, help="Seed of random(): same seed, same data.")
@click.option("--state", type=click.Choice(STATE_NAMES), default="normal", show_default=True,
              help="normal: recent traffic grows with the size; stuck: a fifth of all incidents left active; "
                   "realistic: the last week has scale S's traffic at every size, so only history grows.")
@with_engine
def generate(engine, size: str, source_schema: str, seed: float, state: str) -> None:
    """Create the reference platform tables and fill them with sample data.

    For demos and benchmarks only: it appends rows to incidents, auto_repair_executions and
    knowledge_entries in SOURCE_SCHEMA (creating the tables when absent). Never point it at the
    platform's real database.

    \b
    Example:
        flywheel-sync generate --size S --source-schema bench
    """
    from ..local import generate as sample

    chosen = sample.SIZES[size]
    total = chosen.incidents + chosen.executions + chosen.knowledge_entries
    with click.progressbar(length=total, label=f"generating {size}", show_pos=True) as bar:
        added = sample.generate(engine, chosen, source_schema, seed, progress=bar.update, state=state)
    click.echo(", ".join(f"{rows:,} {table}" for table, rows in added.items()) + f" added to {source_schema}")


COMMANDS = (migrate, downgrade, check, settings, refresh, summary, generate)
