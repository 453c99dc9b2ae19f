"""Connecting to PostgreSQL: URLs, engines, and the one-line errors a user sees when it fails."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from urllib.parse import quote, urlencode

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, make_url

from ..errors import DatabaseUnavailable
from . import pg
# Also named here (db.unavailable, db.mask, ...) by the modules that work through SQLAlchemy.
from ..urls import DATABASE_URL_ENV, REDIS_URL_ENV, mask  # noqa: F401
from .pg import is_refused_login, unavailable  # noqa: F401


def parse_url(url: str | None) -> URL:
    """A SQLAlchemy URL for psycopg 3 from a ``postgresql://`` or ``postgresql+psycopg://`` URL."""
    try:
        parsed = make_url(pg.require_url(url))
    except (sa.exc.ArgumentError, ValueError) as exc:
        raise DatabaseUnavailable(
            f"{DATABASE_URL_ENV} is not a database URL ({type(exc).__name__}); {pg.EXPECTED_URL}"
        ) from exc
    return parsed.set(drivername="postgresql+psycopg")


def libpq_url(url: URL | str) -> str:
    """The URL in libpq's own form (what psql and psycopg.connect take), password included.

    Every part is percent-encoded: ``str()`` of a SQLAlchemy URL hides the password as ``***``, and
    its ``render_as_string`` leaves spaces bare, which libpq refuses.
    """
    parsed = url if isinstance(url, URL) else parse_url(url)
    userinfo = ""
    if parsed.username is not None:
        password = "" if parsed.password is None else ":" + quote(str(parsed.password), safe="")
        userinfo = quote(parsed.username, safe="") + password + "@"
    host = f"[{parsed.host}]" if parsed.host and ":" in parsed.host else (parsed.host or "")
    port = f":{parsed.port}" if parsed.port else ""
    database = "/" + quote(parsed.database, safe="") if parsed.database else ""
    query = "?" + urlencode(parsed.query, doseq=True) if parsed.query else ""
    return f"postgresql://{userinfo}{host}{port}{database}{query}"


def create_engine(url: str | URL, **options) -> Engine:
    parsed = parse_url(url.render_as_string(hide_password=False) if isinstance(url, URL) else url)
    connect_args = {"connect_timeout": pg.CONNECT_TIMEOUT_SECONDS, "application_name": pg.APPLICATION_NAME}
    connect_args.update(options.pop("connect_args", {}))
    return sa.create_engine(parsed, connect_args=connect_args, pool_pre_ping=True, **options)


@contextlib.contextmanager
def connect(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction, committed at the end; connection failures become one line."""
    with _one_line_failures(engine), engine.begin() as connection:
        yield connection


@contextlib.contextmanager
def session(engine: Engine) -> Iterator[Connection]:
    """A connection whose transactions the caller begins and commits (to hold a session-level lock
    across several); connection failures become one line."""
    with _one_line_failures(engine), engine.connect() as connection:
        yield connection


@contextlib.contextmanager
def _one_line_failures(engine: Engine) -> Iterator[None]:
    try:
        yield
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        if _is_connection_failure(exc):
            raise unavailable(engine.url, exc) from exc
        raise
    except sa.exc.DBAPIError as exc:
        if exc.connection_invalidated:
            raise unavailable(engine.url, exc) from exc
        raise


def _is_connection_failure(exc: sa.exc.DBAPIError) -> bool:
    return pg.is_connection_failure(exc.orig)


def describe(exc: sa.exc.DBAPIError) -> str:
    """A database error in one line: PostgreSQL's message, its SQLSTATE and its hint."""
    return pg.describe(exc.orig)


def require_schema(connection: Connection) -> None:
    """Raise NotMigrated unless schema flywheel exists here."""
    pg.require_schema(connection.connection.driver_connection, connection.engine.url)


def require_primary(connection: Connection) -> None:
    """Raise ReadOnlyStandby on a hot standby (see :func:`flywheel_sync.database.pg.require_primary`)."""
    pg.require_primary(connection.connection.driver_connection)
