"""The flywheel-sync command line: a thin click layer over the library.

Each command parses its options, calls one library function and prints. Commands are grouped by
concern, one module each; this module only assembles them.
"""

from __future__ import annotations

import click
import sqlalchemy as sa

from .. import db
from ..errors import FlywheelError
from . import core, demo, grafana, sync

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class FlywheelGroup(click.Group):
    """Turns a database error no command anticipated into one line instead of a traceback."""

    def invoke(self, context: click.Context):
        try:
            return super().invoke(context)
        except sa.exc.DBAPIError as exc:
            raise FlywheelError(db.describe(exc)) from exc


@click.group(cls=FlywheelGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="flywheel-sync")
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
