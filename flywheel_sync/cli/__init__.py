"""The flywheel-sync command line: a thin click layer over the library's parts (database, mirror,
outputs, local).

Each command parses its options, calls one library function and prints. Commands are grouped by
concern, one module each; this module only assembles them, importing a command's module when that
command runs or a help lists it.

Start-up is part of the interface (cron runs `flywheel-sync refresh` every minute): a command module
imports only click and light modules at its top, and the library modules it calls inside its command
functions, so each command loads only the libraries it uses (SQLAlchemy, alembic, redis) and
`--version` and `--help` load none; `refresh` loads no other command module. tests/test_startup.py
checks it; docs/performance.md has the numbers.
"""

from __future__ import annotations

import gc
import sys

import click

from .. import __version__
from ..errors import FlywheelError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
# The module of each command (in its COMMANDS; tests/test_startup.py checks that this names them all).
COMMAND_MODULES = {
    **dict.fromkeys(("migrate", "downgrade", "check", "settings", "refresh", "summary", "generate"), "core"),
    "sync": "sync",
    **dict.fromkeys(("grafana", "serve", "exporter"), "grafana"),
    **dict.fromkeys(("demo", "embedded"), "demo"),
}


class FlywheelGroup(click.Group):
    """Loads a command's module when the command is asked for, and turns a database error no command
    anticipated into one line instead of a traceback."""

    def list_commands(self, context: click.Context) -> list[str]:
        return sorted(COMMAND_MODULES)

    def get_command(self, context: click.Context, name: str) -> click.Command | None:
        module = COMMAND_MODULES.get(name)
        if module is not None:
            self._load(module)
        else:  # a mistyped name: click's "Did you mean" picks from the commands loaded, so load them all
            for module in dict.fromkeys(COMMAND_MODULES.values()):
                self._load(module)
        return super().get_command(context, name)

    def _load(self, module: str) -> None:
        # __import__, as the import statement does: `python -X importtime` (tests/test_startup.py,
        # bench/startup.py) does not see what importlib.import_module imports.
        for command in __import__(f"{__name__}.{module}", fromlist=["COMMANDS"]).COMMANDS:
            self.add_command(command)

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


def main(prog_name: str | None = None) -> None:
    """The program: the console script `flywheel-sync` and `python -m flywheel_sync`."""
    try:
        cli(prog_name=prog_name)
    finally:
        # The process is ending: Python's exit would still run full garbage collections over every
        # object the imports made (psycopg's, click's), 30-60 ms of a refresh, to free memory the
        # operating system frees anyway. Frozen, they are left to it. Here, not in `cli`, which the
        # tests invoke in their own process.
        gc.freeze()
