"""Connecting to PostgreSQL: URLs, engines, and the one-line errors a user sees when it fails."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from urllib.parse import quote, urlencode

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, make_url

from .errors import AuthenticationFailed, DatabaseUnavailable, FlywheelError, NotMigrated, ReadOnlyStandby
from .urls import mask, problem

DATABASE_URL_ENV = "FLYWHEEL_DATABASE_URL"
REDIS_URL_ENV = "FLYWHEEL_REDIS_URL"


def parse_url(url: str | None) -> URL:
    """A SQLAlchemy URL for psycopg 3 from a ``postgresql://`` or ``postgresql+psycopg://`` URL."""
    if not url:
        raise DatabaseUnavailable(
            f"no database given: set {DATABASE_URL_ENV} or pass --database-url "
            "(for a local try-out, `make demo` starts one)"
        )
    malformed = problem(url)
    if malformed:
        raise DatabaseUnavailable(f"the database URL cannot be read: {malformed}")
    try:
        parsed = make_url(url)
    except (sa.exc.ArgumentError, ValueError) as exc:
        raise DatabaseUnavailable(
            f"{DATABASE_URL_ENV} is not a database URL ({type(exc).__name__}); "
            "expected postgresql://user:password@host:5432/dbname"
        ) from exc
    if parsed.get_backend_name() not in ("postgresql", "postgres"):
        raise DatabaseUnavailable(
            f"{mask(parsed)} is not a PostgreSQL URL; expected postgresql://user:password@host:5432/dbname"
        )
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
    connect_args = {"connect_timeout": 10, "application_name": "flywheel-sync"}
    connect_args.update(options.pop("connect_args", {}))
    return sa.create_engine(parsed, connect_args=connect_args, pool_pre_ping=True, **options)


# libpq reports a refused login in its message only (no SQLSTATE reaches the client before the session).
_AUTHENTICATION_FAILURES = ("password authentication failed", "no password supplied", "authentication failed",
                            "role \"", "pg_hba.conf rejects")


def unavailable(url: URL | str, exc: BaseException) -> FlywheelError:
    """The one-line error for a database that refused the login, cannot be reached or dropped the connection."""
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    detail = reason[0] if reason else type(exc).__name__
    detail = detail.removeprefix("connection failed: ")
    if is_refused_login(detail):
        return AuthenticationFailed(
            f"the database at {mask(url)} refused the login: {_server_words(detail)}. "
            f"Put the right user and password in the URL ({DATABASE_URL_ENV} or --database-url; URL-encoded) "
            "or in ~/.pgpass or PGPASSWORD."
        )
    return DatabaseUnavailable(
        f"cannot reach the database at {mask(url)}: {detail}. "
        f"Check that the server is up and the URL is right ({DATABASE_URL_ENV} or --database-url)."
    )


def is_refused_login(message: str) -> bool:
    """Whether libpq's message says the server refused the login (as opposed to not answering)."""
    return any(marker in message for marker in _AUTHENTICATION_FAILURES)


def _server_words(detail: str) -> str:
    """libpq's 'connection to server at ... failed: FATAL:  why' as just 'why'."""
    return detail.split("failed: ", 1)[-1].removeprefix("FATAL:").strip()


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
    sqlstate = getattr(exc.orig, "sqlstate", None)
    # Class 08 is "connection exception"; 57P0x is the server shutting down under us. Errors without
    # a SQLSTATE were raised by the client: no connection could be made at all.
    return sqlstate is None or sqlstate.startswith("08") or sqlstate.startswith("57P0")


def describe(exc: sa.exc.DBAPIError) -> str:
    """A database error in one line: PostgreSQL's message, its SQLSTATE and its hint."""
    diag = getattr(exc.orig, "diag", None)
    message = (diag and diag.message_primary) or str(exc.orig).strip().splitlines()[0]
    if _is_connection_failure(exc):
        return f"lost the connection to the database: {message}. Check that the server is up, then run the command again."
    hint = diag and diag.message_hint
    if not hint and exc.orig.sqlstate == "42501" and "flywheel" in message:
        hint = ("This login holds no flywheel role: a DBA runs GRANT flywheel_reader TO <login>; to read, or "
                "GRANT flywheel_refresher TO <login>; to refresh and sync (README, Roles)")
    return f"database error: {message} (SQLSTATE {exc.orig.sqlstate})" + (f". {hint}" if hint else "")


def require_schema(connection: Connection) -> None:
    """Raise NotMigrated unless schema flywheel exists here."""
    present = connection.execute(sa.text("select to_regnamespace('flywheel') is not null")).scalar_one()
    if not present:
        raise NotMigrated(
            f"schema flywheel does not exist in {mask(connection.engine.url)}: run `flywheel-sync migrate` first"
        )


def require_primary(connection: Connection) -> None:
    """Raise ReadOnlyStandby on a hot standby: refresh and migrate write, a read replica cannot.

    Every read (the views, the JSON and Prometheus functions, the Grafana panels) works on a standby.
    """
    if connection.execute(sa.text("select pg_is_in_recovery()")).scalar_one():
        raise ReadOnlyStandby("read-only standby: run this on the primary")
