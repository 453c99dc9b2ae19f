"""Issue 13: the command line starts fast because each command imports only the libraries it uses.

Checked by what is imported and what runs (the queries before a refresh, the collector at exit), not
by the clock: `python -X importtime` lists every module a run imported, whatever the machine's load.
bench/startup.py measures the time.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata

import psycopg

from flywheel_sync.cli import COMMAND_MODULES, core, demo, grafana, sync
from flywheel_sync.database import pg
from flywheel_sync.database import refresh as refreshing
from flywheel_sync.local import generate

# The libraries that cost start-up time, by their top-level package.
HEAVY = ("sqlalchemy", "alembic", "redis", "psycopg")


def modules_imported_by(*args: str, env: dict | None = None) -> set[str]:
    """The modules a run of `python -X importtime ARGS` imported; fails on a non-zero exit."""
    run = subprocess.run([sys.executable, "-X", "importtime", *args], capture_output=True, text=True,
                         env={**os.environ, **(env or {})})
    assert run.returncode == 0, run.stderr[-2000:]
    return {line.rsplit("|", 1)[1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")}


def imported_by(*args: str, env: dict | None = None) -> set[str]:
    """The top-level packages a run of `python -X importtime ARGS` imported."""
    return {name.split(".")[0] for name in modules_imported_by(*args, env=env)}


def test_version_imports_no_database_redis_or_migration_library():
    assert not imported_by("-m", "flywheel_sync", "--version") & set(HEAVY)


def test_the_help_of_every_command_imports_no_database_redis_or_migration_library():
    """docs/commands.md is every command's --help, rendered in one process."""
    assert not imported_by("-m", "flywheel_sync.cli.docgen") & set(HEAVY)


def test_refresh_imports_psycopg_alone(database_url):
    imported = imported_by("-m", "flywheel_sync", "refresh", env={"FLYWHEEL_DATABASE_URL": database_url})
    assert "psycopg" in imported and not imported & {"sqlalchemy", "alembic", "redis"}


def test_refresh_imports_no_other_command_module(database_url):
    """Nor what they import at their top (the mirror's validation for `sync`)."""
    imported = modules_imported_by("-m", "flywheel_sync", "refresh", env={"FLYWHEEL_DATABASE_URL": database_url})
    assert "flywheel_sync.cli.core" in imported
    assert not imported & {"flywheel_sync.cli.sync", "flywheel_sync.cli.grafana", "flywheel_sync.cli.demo",
                           "flywheel_sync.mirror.validation"}


def test_the_group_loads_each_command_from_the_module_that_defines_it():
    defined = {command.name: module.__name__.rpartition(".")[2]
               for module in (core, sync, grafana, demo) for command in module.COMMANDS}
    assert defined == COMMAND_MODULES


class RecordingConnection(psycopg.Connection):
    """A connection that keeps the text of each statement it executes."""

    statements: list[str]

    def execute(self, query, params=None, **options):
        self.statements.append(str(query))
        return super().execute(query, params, **options)


def test_the_checks_before_a_refresh_are_one_round_trip(database_url):
    with RecordingConnection.connect(**pg.connection_parameters(database_url)) as connection:
        connection.statements = []
        refreshing.refresh_on(connection, database_url)
    assert connection.statements[:2] == [refreshing.CHECKS, "set local statement_timeout = 0"]


def test_the_program_leaves_the_objects_of_its_imports_to_the_operating_system_at_exit():
    """Python's exit would collect garbage over every object the imports made (gc.freeze spares it)."""
    program = ("import atexit, gc, runpy, sys; "
               "atexit.register(lambda: print('frozen at exit:', gc.get_freeze_count() > 0)); "
               "sys.argv = ['flywheel-sync', '--version']; runpy.run_module('flywheel_sync', run_name='__main__')")
    run = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.splitlines()[-1] == "frozen at exit: True", run.stderr[-2000:]


def test_the_console_script_is_the_program_that_freezes_at_exit():
    assert metadata.entry_points(group="console_scripts")["flywheel-sync"].value == "flywheel_sync.cli:main"


def test_the_size_choices_of_generate_are_the_sample_sizes():
    assert core.SIZE_NAMES == tuple(generate.SIZES)


def test_the_state_choices_of_generate_are_the_generator_states():
    assert core.STATE_NAMES == generate.STATES
