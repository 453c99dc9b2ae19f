"""The flywheel-sync command line: a thin click layer over the library.

Each command parses its options, calls one library function and prints. Commands are grouped by
concern, one module each; this module only assembles them.
"""

from __future__ import annotations

import click

from . import core, demo, sync

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT_SETTINGS)
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


for command in (*core.COMMANDS, *demo.COMMANDS, *sync.COMMANDS):
    cli.add_command(command)
