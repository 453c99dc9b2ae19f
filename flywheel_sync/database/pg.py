"""PostgreSQL through psycopg alone: what a command that starts often (refresh, from cron) needs,
without SQLAlchemy's half second of imports.

It also holds the one-line wording of database failures for every caller: :mod:`flywheel_sync.database.db`
gives these functions the psycopg error inside SQLAlchemy's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from urllib.parse import parse_qsl, unquote

import psycopg

from ..errors import AuthenticationFailed, DatabaseUnavailable, FlywheelError, NotMigrated, ReadOnlyStandby
from ..urls import DATABASE_URL_ENV, mask, problem

EXPECTED_URL = "expected postgresql://user:password@host:5432/dbname"
APPLICATION_NAME = "flywheel-sync"
CONNECT_TIMEOUT_SECONDS = 10
# libpq reports a refused login in its message only (no SQLSTATE reaches the client before the session).
_AUTHENTICATION_FAILURES = ("password authentication failed", "no password supplied", "authentication failed",
                            "role \"", "pg_hba.conf rejects")


def require_url(url: str | None) -> str:
    """``url`` when it is a readable PostgreSQL URL (postgresql://, postgres://, postgresql+driver://)."""
    if not url:
        raise DatabaseUnavailable(
            f"no database given: set {DATABASE_URL_ENV} or pass --database-url "
            "(for a local try-out, `make demo` starts one)"
        )
    malformed = problem(url)
    if malformed:
        raise DatabaseUnavailable(f"the database URL cannot be read: {malformed}")
    scheme, separator, _ = url.partition("://")
    if not separator:
        raise DatabaseUnavailable(f"{DATABASE_URL_ENV} is not a database URL; {EXPECTED_URL}")
    if scheme.partition("+")[0] not in ("postgresql", "postgres"):
        raise DatabaseUnavailable(f"{mask(url)} is not a PostgreSQL URL; {EXPECTED_URL}")
    return url


def connection_parameters(url: str | None) -> dict[str, str]:
    """libpq's parameters from a database URL, read as SQLAlchemy reads it (flywheel_sync.database.db), so a URL
    means the same to every command: user name, password and database name percent-decoded, the host
    as written (IPv6 without its brackets), the query's parameters as they are. libpq's own URL parser
    is stricter (it refuses a bare space in a password)."""
    _, _, rest = require_url(url).partition("://")
    rest, _, query = rest.partition("?")
    authority, _, database = rest.partition("/")
    userinfo, _, hostport = authority.rpartition("@")
    user, colon, password = userinfo.partition(":")
    if hostport.startswith("["):
        host, _, port = hostport[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _, port = hostport.partition(":")
    parameters = {"user": unquote(user), "password": unquote(password) if colon else "", "host": host,
                  "port": port, "dbname": unquote(database)}
    given: dict[str, list[str]] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        given.setdefault(key, []).append(value)
    # A parameter of the query wins over the URL's part, and a repeated one is libpq's list (host=a&host=b).
    parameters.update({key: ",".join(values) for key, values in given.items()})
    return {key: value for key, value in parameters.items() if value}


def connect(url: str | None, **options) -> psycopg.Connection:
    """A psycopg connection (not in autocommit unless told) for a database URL; failures in one line."""
    options = {"connect_timeout": CONNECT_TIMEOUT_SECONDS, "application_name": APPLICATION_NAME, **options}
    try:
        return psycopg.connect(**connection_parameters(url), **options)
    except psycopg.ProgrammingError as exc:
        # libpq refused a parameter; its message may quote the password.
        raise DatabaseUnavailable(f"{DATABASE_URL_ENV} is not a database URL libpq accepts "
                                  f"({type(exc).__name__}); {EXPECTED_URL}") from exc
    except psycopg.OperationalError as exc:
        raise unavailable(url, exc) from exc


@contextlib.contextmanager
def one_line_failures(url) -> Iterator[None]:
    """A connection lost while in use becomes the one-line 'cannot reach the database' error."""
    try:
        yield
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        if is_connection_failure(exc):
            raise unavailable(url, exc) from exc
        raise


def unavailable(url, exc: BaseException) -> FlywheelError:
    """The one-line error for a database that refused the login, cannot be reached or dropped the connection.

    ``exc`` is psycopg's error or SQLAlchemy's around it; ``url`` a string or SQLAlchemy URL.
    """
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


def is_connection_failure(error: psycopg.Error) -> bool:
    sqlstate = getattr(error, "sqlstate", None)
    # Class 08 is "connection exception"; 57P0x is the server shutting down under us. Errors without
    # a SQLSTATE were raised by the client: no connection could be made at all.
    return sqlstate is None or sqlstate.startswith("08") or sqlstate.startswith("57P0")


def describe(error: psycopg.Error) -> str:
    """A database error in one line: PostgreSQL's message, its SQLSTATE and its hint."""
    diag = getattr(error, "diag", None)
    message = (diag and diag.message_primary) or str(error).strip().splitlines()[0]
    if is_connection_failure(error):
        return f"lost the connection to the database: {message}. Check that the server is up, then run the command again."
    hint = diag and diag.message_hint
    if not hint and error.sqlstate == "42501" and "flywheel" in message:
        hint = ("This login holds no flywheel role: a DBA runs GRANT flywheel_reader TO <login>; to read, or "
                "GRANT flywheel_refresher TO <login>; to refresh and sync (README, Roles)")
    return f"database error: {message} (SQLSTATE {error.sqlstate})" + (f". {hint}" if hint else "")


def require_schema(connection: psycopg.Connection, url) -> None:
    """Raise NotMigrated unless schema flywheel exists here (``url`` is what the message shows, masked)."""
    if not connection.execute("select to_regnamespace('flywheel') is not null").fetchone()[0]:
        raise schema_missing(url)


def schema_missing(url) -> NotMigrated:
    return NotMigrated(f"schema flywheel does not exist in {mask(url)}: run `flywheel-sync migrate` first")


def require_primary(connection: psycopg.Connection) -> None:
    """Raise ReadOnlyStandby on a hot standby: refresh and migrate write, a read replica cannot.

    Every read (the views, the JSON and Prometheus functions, the Grafana panels) works on a standby.
    """
    if connection.execute("select pg_is_in_recovery()").fetchone()[0]:
        raise on_standby()


def on_standby() -> ReadOnlyStandby:
    return ReadOnlyStandby("read-only standby: run this on the primary")
