"""Commands for trying flywheel-sync on one machine: demo and embedded."""

from __future__ import annotations

import click

from .options import database_url, redis_url


@click.command()
@database_url
@redis_url
def demo(database_url: str | None, redis_url: str | None) -> None:
    """Run the whole flywheel on sample data, starting servers if none are given.

    Without FLYWHEEL_DATABASE_URL / FLYWHEEL_REDIS_URL, starts an embedded PostgreSQL and Redis under
    .flywheel/ here. Then creates database flywheel_demo with the reference platform tables, fills
    them with weeks of sample data, migrates, writes sample playbooks to Redis under
    flywheel-demo:playbook:PB-* (two of them invalid on purpose) and syncs them, refreshes and prints
    the summary. A given server keeps its own data: the demo uses only that database and that prefix.

    \b
    Example:
        flywheel-sync demo
    """
    from ..local import demo as demonstration

    def progress(total: int, label: str):
        bar = click.progressbar(length=total, label=label, show_pos=True)
        bar.__enter__()

        def update(rows: int) -> None:
            bar.update(rows)
            if bar.pos >= total:
                bar.__exit__(None, None, None)

        return update

    servers_used = demonstration.run(database_url, redis_url, click.echo, progress)
    click.echo(demonstration.next_steps(servers_used))


@click.group()
def embedded() -> None:
    """Start, stop or show the embedded PostgreSQL and Redis of the demo (under .flywheel/)."""


@embedded.command()
def start() -> None:
    """Start both servers (no-op for one already running) and print their URLs as shell exports.

    \b
    Example:
        eval "$(flywheel-sync embedded start)"
    """
    from ..local import demo as demonstration
    from ..local import embedded as servers

    postgres = servers.start_postgres(demonstration.HOME / "postgres")
    redis = demonstration.start_redis()
    click.echo(f"export FLYWHEEL_DATABASE_URL='{postgres.url}'")
    click.echo(f"export FLYWHEEL_REDIS_URL='{redis.url}'")


@embedded.command()
def stop() -> None:
    """Stop both servers (their data stays under .flywheel/)."""
    from ..local import demo as demonstration
    from ..local import embedded as servers

    for name in ("postgres", "redis"):
        stopped = servers.stop(demonstration.HOME / name)
        click.echo(f"{name}: {'stopped' if stopped else 'was not running'}")


@embedded.command()
def status() -> None:
    """Say which embedded servers run, and where."""
    from ..local import demo as demonstration
    from ..local import embedded as servers

    for name in ("postgres", "redis"):
        server = servers.status(demonstration.HOME / name)
        click.echo(f"{name}: {server.url + ' (pid ' + str(server.pid) + ')' if server else 'not running'}")


COMMANDS = (demo, embedded)
