"""Options shared by several commands.

Like every module of the command line, this one imports no database, Redis or migration library at
its top: `flywheel-sync --version` and `--help` need none, and each command imports what it uses
when it runs (tests/test_startup.py checks it).
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING

import click

from ..urls import DATABASE_URL_ENV, REDIS_URL_ENV

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

database_url = click.option(
    "--database-url", "database_url", envvar=DATABASE_URL_ENV, show_envvar=True, metavar="URL",
    help="PostgreSQL URL of the platform's database (postgresql://user:password@host:5432/dbname).",
)

redis_url = click.option(
    "--redis-url", "redis_url", envvar=REDIS_URL_ENV, show_envvar=True, metavar="URL",
    help="Redis URL of the playbook store (redis://, rediss:// for TLS, unix://).",
)

as_json = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts instead of a table.")


@contextlib.contextmanager
def engine_for(url: str | None) -> Iterator[Engine]:
    """An engine for the URL, disposed afterwards."""
    from ..database.db import create_engine

    engine = create_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def with_engine(command):
    """Add --database-url to the command and hand it an engine instead of the URL."""

    @database_url
    @functools.wraps(command)
    def wrapper(database_url, **options):
        with engine_for(database_url) as engine:
            return command(engine=engine, **options)

    return wrapper


def echo_json(value) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def echo_table(headers: list[str], rows: list[list], right_align: set[int] = frozenset()) -> None:
    """A plain text table: columns padded to their widest cell."""
    cells = [[str(cell) for cell in headers]] + [["" if cell is None else str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "  ".join(cell.rjust(widths[i]) if i in right_align else cell.ljust(widths[i])
                         for i, cell in enumerate(row)).rstrip()

    click.echo(line(cells[0]))
    click.echo("  ".join("-" * width for width in widths))
    for row in cells[1:]:
        click.echo(line(row))
