"""The flywheel-sync command line: a thin click layer over the library's parts (database, mirror,
outputs, local).

Each command parses its options, calls one library function and prints. Commands are grouped by
concern, one module each; this module only assembles them.

Start-up is part of the interface (cron runs `flywheel-sync refresh` every minute): a command module
imports only click and light modules at its top, and the library modules it calls inside its command
functions, so each command loads only the libraries it uses (SQLAlchemy, alembic, redis) and
`--version` and `--help` load none. tests/test_startup.py checks it; docs/performance.md has the numbers.
"""

from __future__ import annotations

import gc
import sys

import click

from .. import __version__
from ..errors import FlywheelError
from . import core, demo, grafana, sync

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class FlywheelGroup(click.Group):
    """Turns a database error no command anticipated into one line instead of a traceback."""

    def invoke(self, context: click.Context):
        try:
            return super().invoke(context)
        except Exception as exc:
            error = _database_error(exc)
            if error is None:
                raise
            from ..database import pg

            raise FlywheelError(pg.describe(error)) from exc


def _database_error(exc: Exception):
    """The psycopg error that ``exc`` is or that SQLAlchemy wrapped in it; None for any other error."""
    psycopg = sys.modules.get("psycopg")
    if psycopg is None:  # not imported, so nothing raised one
        return None
    for candidate in (exc, getattr(exc, "orig", None)):
        if isinstance(candidate, psycopg.Error):
            return candidate
    return None


@click.group(cls=FlywheelGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, package_name="flywheel-sync")
def cli() -> None:
    """Health metrics of the AIOps flywheel, computed in PostgreSQL.

    Migrate schema flywheel into the platform's database, refresh the metrics (cron or pg_cron can
    call flywheel.refresh() directly), mirror the Redis playbooks, and show the results.

    \b
    Example:
        export FLYWHEEL_DATABASE_URL=postgresql://flywheel@db:5432/platform
        flywheel-sync check && flywheel-sync migrate && flywheel-sync refresh
        flywheel-sync summary
    """


for command in (*core.COMMANDS, *sync.COMMANDS, *grafana.COMMANDS, *demo.COMMANDS):
    cli.add_command(command)


def main(prog_name: str | None = None) -> None:
    """The program: the console script `flywheel-sync` and `python -m flywheel_sync`."""
    try:
        cli(prog_name=prog_name)
    finally:
        # The process is ending: Python's exit would still run full garbage collections over every
        # object the imports made (psycopg's, click's), 50-60 ms of a refresh, to free memory the
        # operating system frees anyway. Frozen, they are left to it. Here, not in `cli`, which the
        # tests invoke in their own process.
        gc.freeze()
