"""The command of the playbook mirror: sync (one pass, --follow, --invalid, --health)."""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING

import click

from ..mirror import validation
from ..mirror.validation import DEFAULT_PATTERN
from .options import as_json, echo_json, echo_table, redis_url, with_engine

if TYPE_CHECKING:
    from ..mirror.sync_pass import InvalidRow


@click.command()
@click.option("--pattern", default=DEFAULT_PATTERN, show_default=True,
              help="Redis key pattern of the playbooks (SCAN MATCH); the id is what follows the last ':' before a wildcard.")
@click.option("--follow", is_flag=True, help="Keep running: apply changes as they happen, reconcile on an interval.")
@click.option("--invalid", "list_invalid", is_flag=True, help="List the invalid records of the mirror (no sync).")
@click.option("--health", "max_age", type=float, metavar="SECONDS",
              help="Exit 1 unless a complete pass finished within SECONDS (for monitoring; no sync).")
@click.option("--reconcile-every", type=float, default=300.0, show_default=True, metavar="SECONDS",
              help="With --follow: seconds between full reconciliation passes.")
@click.option("--refresh-every", type=click.FloatRange(min=0.1), metavar="SECONDS",
              help="With --follow: also run the refresh every SECONDS (2-5 keeps flywheel.summary seconds "
                   "fresh; skipped while another refresher holds the lock).")
@click.option("--refresh-after-change", is_flag=True,
              help="With --follow: also refresh as soon as the mirror changed.")
@click.option("--allow-mass-delete", is_flag=True,
              help="Delete even when a pass would remove more than half the mirror's rows (refused otherwise: "
                   "a pattern typo or an emptied Redis would wipe it).")
@click.option("--no-wait", is_flag=True, help="With --follow: exit when another worker holds the lock instead of waiting.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="With --follow: one line per event on stderr, as text or JSON.")
@as_json
@redis_url
@with_engine
def sync(engine, redis_url: str | None, pattern: str, follow: bool, list_invalid: bool, max_age: float | None,
         reconcile_every: float, refresh_every: float | None, refresh_after_change: bool, allow_mass_delete: bool,
         no_wait: bool, log_format: str, as_json: bool) -> None:
    """Mirror the Redis playbook records into flywheel.playbooks.

    One pass SCANs the pattern, reads values in batches, validates each record and writes the
    changes in bulk; keys gone from Redis lose their rows once a scan saw the whole key space.
    Invalid records are kept as invalid rows with the reason (they count in no metric) and do not
    fail the pass. A pass that would delete more than half the mirror deletes nothing unless given
    --allow-mass-delete. Exits 0 when the pass completed, 1 when it could not (nothing was deleted
    then), 78 when a server refused the password. Every pass is recorded in flywheel.sync_log.

    With --follow it keeps running: Redis keyspace notifications bring changes within about a
    second (the worker turns them on when Redis allows it, and says how when not), a full pass runs
    every --reconcile-every seconds, and SIGTERM or SIGINT stop it cleanly (the pass or refresh in
    hand finishes, exit 0; a second signal exits at once). One worker per database. With
    --refresh-every it keeps the metrics current too: docs/sync.md, "Seconds-fresh metrics".

    \b
    Example:
        flywheel-sync sync
        flywheel-sync sync --json --pattern 'tenant-a:playbook:PB-*'
        flywheel-sync sync --invalid
        flywheel-sync sync --follow --refresh-every 2 --refresh-after-change --log-format json
        flywheel-sync sync --health 900 || echo "no complete sync in 15 minutes"
    """
    from ..mirror import sync_pass as syncing
    from ..mirror import worker

    if list_invalid:
        _print_invalid(syncing.invalid_rows(engine), as_json)
    elif max_age is not None:
        _health(engine, max_age, as_json)
    elif follow:
        options = worker.FollowOptions(
            redis_url=syncing.require_redis_url(redis_url), pattern=pattern, reconcile_every=reconcile_every,
            refresh_every=refresh_every, refresh_after_change=refresh_after_change, wait_for_lock=not no_wait,
            allow_mass_delete=allow_mass_delete)
        stopping = worker.Stopping()
        log = worker.Log(json_lines=log_format == "json")
        stopping.install_signal_handlers(log)
        worker.follow(engine, options, log, stopping)
        worker.exit_after_signal(engine, stopping)
    else:
        _one_pass(engine, syncing.require_redis_url(redis_url), pattern, allow_mass_delete, as_json)


def _one_pass(engine, redis_url: str, pattern: str, allow_mass_delete: bool, as_json: bool) -> None:
    from ..mirror import sync_pass as syncing
    from ..mirror import worker

    client = syncing.connect_redis(redis_url)
    try:
        with worker.exclusive(engine), _progress(client, as_json) as progress:
            result = syncing.sync_pass(engine, client, pattern, progress=progress, allow_mass_delete=allow_mass_delete)
    finally:
        client.close()
    if as_json:
        echo_json(result.as_dict())
    else:
        click.echo(result.line(with_error=False))  # an incomplete pass's error is the Error line below
    if result.error and result.error.startswith(syncing.MASS_DELETE_REFUSED):
        raise syncing.SyncIncomplete(f"sync {result.sync_id}: {result.error}.")
    if not result.complete:
        raise syncing.SyncIncomplete(
            f"sync {result.sync_id} did not see the whole key space ({result.error}); nothing was deleted. "
            "Run it again once Redis is reachable.")


@contextlib.contextmanager
def _progress(client, as_json: bool):
    """A progress bar on a terminal (its length is every key of the database, an upper bound)."""
    if as_json or not sys.stderr.isatty():
        yield None
        return
    with click.progressbar(length=client.dbsize(), label="syncing", file=sys.stderr) as bar:
        yield bar.update


def _print_invalid(rows: list[InvalidRow], as_json: bool) -> None:
    if as_json:
        echo_json([{"playbook_id": row.playbook_id, "redis_key": row.redis_key.hex(),
                    "invalid_reason": row.invalid_reason, "raw_excerpt": row.raw_excerpt,
                    "changed_at": row.changed_at} for row in rows])
        return
    # A key or a value may hold terminal escape sequences: shown escaped, never sent to the terminal.
    echo_table(["playbook_id", "reason", "changed_at"],
               [[validation.printable(row.playbook_id), validation.printable(row.invalid_reason), row.changed_at]
                for row in rows])
    click.echo(f"{len(rows)} invalid record(s); they count in no metric until fixed in Redis")


def _health(engine, max_age: float, as_json: bool) -> None:
    from ..mirror import sync_pass as syncing

    status = syncing.health(engine, max_age)
    if as_json:
        echo_json(status.as_dict())
    else:
        click.echo(status.line())
    if not status.ok:
        raise click.exceptions.Exit(1)


COMMANDS = (sync,)
