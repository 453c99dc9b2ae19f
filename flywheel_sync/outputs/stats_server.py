"""The stats server (``flywheel-sync serve``): the old service's three HTTP answers, read-only.

- ``/metrics`` (and ``/metrics/flywheel``, the old path): the text of ``flywheel.prometheus_text()``
  followed by the server's own health; a scrape always answers 200, with ``awoooi_flywheel_up 0``
  when the database could not be read in time.
- ``/api/v1/stats/summary`` and ``/api/v1/stats/flywheel``: exactly the JSON of
  ``flywheel.summary_json()`` / ``flywheel.flywheel_json()``, with an ETag from ``computed_at`` and a
  Cache-Control that lasts until the next refresh is due; 503 with a JSON body and Retry-After when
  the database could not be read in time.
- ``/healthz`` (liveness: the process answers, no database), ``/`` (a landing page), HEAD and OPTIONS.

Bounded everything, so a sick database or a sick client cannot take the server down with it:

- every request has a deadline (the scrape timeout Prometheus announces in
  X-Prometheus-Scrape-Timeout-Seconds minus a margin, at most ``deadline``); the database enforces it
  (``SET LOCAL statement_timeout`` and ``lock_timeout`` in the read's transaction, libpq's
  connect_timeout), and the request stops waiting at it even when the server is hung and enforces
  nothing;
- a fresh connection per read, no pool: nothing to pre-ping, nothing stale after a restart;
- requests asking for the same answer at the same time share one database read, so a burst of
  scrapes (or a hung server) costs one connection, not one per request;
- a fixed pool of worker threads, a bounded number of accepted connections waiting for one (beyond
  that a client gets 503 at once), a listen backlog of 512, and a deadline for a client to send its
  request head (a client that never finishes holds a worker for at most that long);
- a client that goes away is logged at debug level, never as a traceback.

The log says one line per change of the database's state (first read, failure and its cause,
recovery), not one per request.

Why the standard library's socketserver and http.server rather than prometheus_client's exposition
server or a web framework: the exposition comes ready-made from PostgreSQL, so prometheus_client's
registry and encoders would parse and re-print it on every scrape for no gain (Prometheus accepts
text format 0.0.4 from any target), and its server (a ThreadingHTTPServer: one thread per connection,
no read timeout) has the very faults fixed here. The hand-written part is the scheduling (pool, slots,
deadlines), not HTTP parsing, which stays http.server's.
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import logging
import math
import signal
import socket
import socketserver
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

import psycopg
import psycopg.errors

from ..database import db
from ..errors import FlywheelError

log = logging.getLogger(__name__)

TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
PLAIN = "text/plain; charset=utf-8"
JSON = "application/json"
SCRAPE_TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"
# Time kept back from Prometheus's scrape timeout to write the answer and cross the network.
SCRAPE_MARGIN_SECONDS = 0.5
SHORTEST_DEADLINE_SECONDS = 0.2
# The database cancels a read this much before the request stops waiting for it.
SERVER_SIDE_MARGIN_SECONDS = 0.2
LOCK_BEFORE_STATEMENT_MS = 50
# A read whose server vanished (a partition, a crashed host) would wait for an answer for ever, and
# the requests that join it (see DatabaseReader.read) with it; TCP keepalives end it within ~20 s. A
# hung but present server still acknowledges them: its read ends when the server resumes.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 5, "keepalives_count": 3}
# libpq refuses a connect_timeout below 2 seconds; the request's own deadline still applies.
SHORTEST_CONNECT_TIMEOUT = 2
RETRY_AFTER_SECONDS = 15
ALLOWED = "GET, HEAD, OPTIONS"


@dataclass(frozen=True)
class ServerOptions:
    with_timestamps: bool = False
    # Seconds a request may wait for the database at most; under Prometheus's default 10 s timeout.
    deadline: float = 8.0
    # Threads are cheap next to a scrape's timeout: enough that clients stalling their request (each
    # held at most client_timeout) leave workers for Prometheus.
    workers: int = 64
    # Accepted connections that may wait for a worker; more get 503 at once.
    waiting: int = 192
    # Seconds a client has to send its whole request head, and to take the answer.
    client_timeout: float = 5.0
    # How often the metrics are refreshed: the JSON answers may be cached until the next refresh.
    refresh_interval: int = 60
    backlog: int = 512


class AddressUnavailable(FlywheelError):
    """The address or port to listen on is taken or not ours."""


class ReadFailed(FlywheelError):
    """The database could not give an answer in time; ``kind`` names the cause for the log.

    The message, with the masked URL and the login, is for the log; a client gets only ``reason``:
    an HTTP client is not told where the database is or who the server logs in as.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind

    @property
    def reason(self) -> str:
        return f"{PUBLIC_REASONS.get(self.kind, 'the database answered with an error')}; the server's log says more"


PUBLIC_REASONS = {
    "locked": "a lock on a flywheel table held the read past its deadline",
    "timeout": "the database did not answer in time",
    "privilege": "the server's login may not read schema flywheel",
    "not migrated": "schema flywheel is missing or too old in the database",
    "not refreshed": "no refresh has run yet",
    "login refused": "the database refused the server's login",
    "unreachable": "cannot reach the database",
}


# Reads --------------------------------------------------------------------------------------------

QUERIES = {
    "metrics": "select flywheel.prometheus_text(%(stamps)s)",
    "summary": "select flywheel.summary_json()::text",
    "flywheel": "select flywheel.flywheel_json()::text",
}


class DatabaseState:
    """The database's state as the last read saw it; logs one line whenever it changes."""

    def __init__(self, shown_url: str) -> None:
        self.shown_url = shown_url
        self.lock = threading.Lock()
        self.failure: str | None = None
        self.known = False

    def answered(self) -> None:
        with self.lock:
            if self.known and self.failure is None:
                return
            back = self.known
            self.known, self.failure = True, None
        log.info("database %s %s", self.shown_url, "is back: reads answer again" if back else "answers")

    def failed(self, error: ReadFailed) -> None:
        with self.lock:
            if self.failure == error.kind:
                return
            self.known, self.failure = True, error.kind
        log.warning("%s", error.message)


class DatabaseReader:
    """Reads one answer of the SQL functions within a deadline; concurrent asks share one read."""

    def __init__(self, database_url: str | None, with_timestamps: bool) -> None:
        self.shown_url = db.mask(db.parse_url(database_url))
        self.conninfo = db.libpq_url(database_url)
        self.with_timestamps = with_timestamps
        self.state = DatabaseState(self.shown_url)
        self.lock = threading.Lock()
        self.in_flight: dict[str, tuple[concurrent.futures.Future, float]] = {}

    def read(self, kind: str, seconds: float) -> str:
        """The text of one query, or ReadFailed saying why not, within ``seconds``.

        A request that finds a read of the same kind under way waits for that one instead of starting
        another. A read stuck on a hung server therefore holds one thread, and every request waiting
        for it still answers at its own deadline.
        """
        deadline = time.monotonic() + seconds
        with self.lock:
            future, started = self.in_flight.get(kind, (None, 0.0))
            if future is None or future.done():
                started = time.monotonic()
                future = concurrent.futures.Future()
                # A daemon thread per read (at most one per kind at a time): a read stuck on a hung
                # server must not keep the process from exiting on SIGTERM, as a pool's thread would.
                threading.Thread(target=self._run, args=(future, kind, deadline), daemon=True,
                                 name=f"flywheel-read-{kind}").start()
                self.in_flight[kind] = (future, started)
        try:
            text = future.result(timeout=max(0.0, deadline - time.monotonic()))
        except concurrent.futures.TimeoutError:
            waiting = time.monotonic() - started
            error = ReadFailed("timeout", f"the database at {self.shown_url} did not answer within {seconds:.1f} s"
                               + (f" (its read has waited {waiting:.0f} s)" if waiting > seconds + 1 else "")
                               + ": the server is hung, overloaded or unreachable")
            self.state.failed(error)
            raise error from None
        except ReadFailed as error:
            self.state.failed(error)
            raise
        self.state.answered()
        return text

    def _run(self, future: concurrent.futures.Future, kind: str, deadline: float) -> None:
        try:
            future.set_result(self._query(kind, deadline))
        except ReadFailed as error:
            future.set_exception(error)
        except Exception as exc:  # noqa: BLE001 (a scrape must answer whatever the read did)
            log.debug("reading %s failed", kind, exc_info=True)
            future.set_exception(ReadFailed(f"error {type(exc).__name__}",
                                            f"reading the database at {self.shown_url} failed: {type(exc).__name__}: {exc}"))

    def _query(self, kind: str, deadline: float) -> str:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ReadFailed("timeout", f"the database at {self.shown_url} was not asked: no time left")
        user = None
        try:
            with psycopg.connect(self.conninfo, application_name="flywheel-sync serve",
                                 connect_timeout=max(SHORTEST_CONNECT_TIMEOUT, math.ceil(remaining)),
                                 **KEEPALIVES) as connection:
                user = connection.info.user
                # The read's own transaction carries the deadline to the server: a statement or a lock
                # wait that would outlast the request is cancelled there, a little before the request
                # stops waiting, so that the answer can say why.
                left = deadline - time.monotonic() - SERVER_SIDE_MARGIN_SECONDS
                milliseconds = max(10, int(left * 1000))
                connection.execute(f"set local statement_timeout = {milliseconds}")
                # Shorter than the statement's, so that a lock wait is reported as one.
                connection.execute(f"set local lock_timeout = {max(5, milliseconds - LOCK_BEFORE_STATEMENT_MS)}")
                return connection.execute(QUERIES[kind], {"stamps": self.with_timestamps}).fetchone()[0]
        except psycopg.Error as exc:
            raise self._explain(exc, user or "the login user") from exc

    def _explain(self, exc: psycopg.Error, user: str) -> ReadFailed:
        sqlstate = exc.sqlstate or ""
        message = ((exc.diag.message_primary if exc.diag else None)
                   or (str(exc).strip().splitlines() or [type(exc).__name__])[0])
        if isinstance(exc, psycopg.errors.LockNotAvailable):
            return ReadFailed("locked", f"a lock on a flywheel table held the read past its deadline at {self.shown_url} "
                                        f"({message}): find the holder in pg_locks / pg_stat_activity")
        if isinstance(exc, psycopg.errors.QueryCanceled):
            return ReadFailed("timeout", f"the database at {self.shown_url} did not answer before the deadline "
                                         f"({message}): the server is overloaded or a query is stuck")
        if isinstance(exc, psycopg.errors.InsufficientPrivilege):
            return ReadFailed("privilege", f"{user} may not read schema flywheel at {self.shown_url} ({message}): "
                                           f"run GRANT flywheel_reader TO {user};")
        if isinstance(exc, (psycopg.errors.InvalidSchemaName, psycopg.errors.UndefinedFunction)):
            return ReadFailed("not migrated", f"schema flywheel is missing or too old at {self.shown_url} ({message}): "
                                              "run `flywheel-sync migrate`")
        if isinstance(exc, psycopg.errors.NoDataFound):
            return ReadFailed("not refreshed", f"no refresh has run at {self.shown_url} yet: "
                                               "run `flywheel-sync refresh`")
        if db.is_refused_login(message):
            return ReadFailed("login refused", f"the database at {self.shown_url} refused the login ({message}): put "
                                               "the right user and password in the URL (URL-encoded), ~/.pgpass or "
                                               "PGPASSWORD")
        if not sqlstate or sqlstate.startswith(("08", "57P0")):
            return ReadFailed("unreachable", f"cannot reach the database at {self.shown_url}: {message}. "
                                             "Check that the server is up and the URL is right")
        return ReadFailed(f"error {sqlstate}", f"database error at {self.shown_url}: {message} (SQLSTATE {sqlstate})")


# HTTP ---------------------------------------------------------------------------------------------

HEALTH = """\
# HELP awoooi_flywheel_up 1 when the server read the flywheel metrics from the database, 0 when it could not
# TYPE awoooi_flywheel_up gauge
awoooi_flywheel_up {up}

# HELP awoooi_flywheel_exporter_scrape_errors_total Scrapes that could not read the flywheel metrics
# TYPE awoooi_flywheel_exporter_scrape_errors_total counter
awoooi_flywheel_exporter_scrape_errors_total {errors}

# HELP awoooi_flywheel_exporter_scrape_duration_seconds Seconds this scrape spent reading the database
# TYPE awoooi_flywheel_exporter_scrape_duration_seconds gauge
awoooi_flywheel_exporter_scrape_duration_seconds {duration:.6f}
"""

LANDING = """<!doctype html>
<html><head><meta charset="utf-8"><title>flywheel-sync stats server</title></head>
<body><h1>flywheel-sync stats server</h1>
<p>The AIOps flywheel's health metrics, computed in PostgreSQL (schema flywheel).</p>
<ul>
<li><a href="/metrics">/metrics</a> Prometheus text (also at <a href="/metrics/flywheel">/metrics/flywheel</a>)</li>
<li><a href="/api/v1/stats/summary">/api/v1/stats/summary</a> the summary JSON</li>
<li><a href="/api/v1/stats/flywheel">/api/v1/stats/flywheel</a> the flywheel JSON</li>
<li><a href="/healthz">/healthz</a> liveness</li>
</ul></body></html>
"""


class _HeadReader(io.RawIOBase):
    """The client's bytes, for as long as the request head may take in all (not per read)."""

    def __init__(self, connection: socket.socket, seconds: float) -> None:
        self.connection = connection
        self.deadline = time.monotonic() + seconds

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the client did not send its request in time")
        self.connection.settimeout(remaining)
        return self.connection.recv_into(buffer)


class _Writer(io.BufferedIOBase):
    def __init__(self, connection: socket.socket) -> None:
        self.connection = connection

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.connection.sendall(data)
        return len(data)


class Handler(BaseHTTPRequestHandler):
    server_version = "flywheel-sync"
    server: StatsServer

    def version_string(self) -> str:
        """The Server header: the name alone (http.server appends a space and Python's version)."""
        return self.server_version

    def setup(self) -> None:
        self.connection = self.request
        self.rfile = io.BufferedReader(_HeadReader(self.connection, self.server.options.client_timeout))
        self.wfile = _Writer(self.connection)

    def do_GET(self) -> None:  # noqa: N802 (the names http.server calls)
        self._route(send_body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._route(send_body=False)

    def do_OPTIONS(self) -> None:  # noqa: N802
        if self.path != "*" and self._path() not in self.server.routes:
            self._not_found(send_body=True)
            return
        self._respond(204, None, b"", [("Allow", ALLOWED)])

    def _refuse_method(self) -> None:
        self.close_connection = True
        self._respond(405, PLAIN, f"{self.command} is not allowed here: the stats server only reads ({ALLOWED})\n".encode(),
                      [("Allow", ALLOWED)])

    do_POST = do_PUT = do_PATCH = do_DELETE = _refuse_method  # noqa: N815

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (bad request line, unknown method, timeout) in plain text."""
        self.close_connection = True
        reason = message or self.responses.get(code, ("error",))[0]
        headers = [("Allow", ALLOWED)] if code == 501 else []
        self._respond(code, PLAIN, f"{code} {reason}\n".encode(), headers, send_body=self.command != "HEAD")

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's signature)
        log.debug("%s %s", self.address_string(), format % args)

    def _path(self) -> str:
        return urlsplit(self.path).path

    def _route(self, send_body: bool) -> None:
        answer = self.server.routes.get(self._path())
        if answer is None:
            self._not_found(send_body)
            return
        answer(self, send_body)

    def _not_found(self, send_body: bool) -> None:
        paths = ", ".join(self.server.routes)
        self._respond(404, PLAIN, f"Not found. This server answers {paths}\n".encode(), send_body=send_body)

    def _respond(self, status: int, content_type: str | None, body: bytes, headers=(), send_body: bool = True) -> None:
        # A client that stops reading cannot hold the worker longer than it could while sending.
        self.connection.settimeout(self.server.options.client_timeout)
        self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        if status != 304:
            self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if send_body and status not in (204, 304):
            self.wfile.write(body)

    # The answers -----------------------------------------------------------------------------------

    def landing(self, send_body: bool) -> None:
        self._respond(200, "text/html; charset=utf-8", LANDING.encode(), send_body=send_body)

    def healthz(self, send_body: bool) -> None:
        self._respond(200, PLAIN, b"ok\n", [("Cache-Control", "no-store")], send_body)

    def metrics(self, send_body: bool) -> None:
        started = time.monotonic()
        try:
            exposition, up = self.server.reader.read("metrics", self._scrape_deadline()) + "\n", 1
        except ReadFailed:
            exposition, up = "", 0
        errors = self.server.count_scrape(failed=not up)
        body = exposition + HEALTH.format(up=up, errors=errors, duration=time.monotonic() - started)
        self._respond(200, TEXT_FORMAT, body.encode(), [("Cache-Control", "no-store")], send_body)

    def _scrape_deadline(self) -> float:
        """The scrape timeout Prometheus announces, less a margin, and never more than the deadline."""
        deadline = self.server.options.deadline
        try:
            announced = float(self.headers.get(SCRAPE_TIMEOUT_HEADER, ""))
        except ValueError:
            return deadline
        if not math.isfinite(announced) or announced <= 0:
            return deadline
        return min(deadline, max(SHORTEST_DEADLINE_SECONDS, announced - SCRAPE_MARGIN_SECONDS))

    def summary(self, send_body: bool) -> None:
        self._json("summary", send_body)

    def flywheel(self, send_body: bool) -> None:
        self._json("flywheel", send_body)

    def _json(self, kind: str, send_body: bool) -> None:
        try:
            text = self.server.reader.read(kind, self.server.options.deadline)
        except ReadFailed as error:
            body = json.dumps({"error": "the flywheel metrics cannot be read now", "detail": error.reason,
                               "retry_after_seconds": RETRY_AFTER_SECONDS})
            self._respond(503, JSON, body.encode(), [("Retry-After", str(RETRY_AFTER_SECONDS)),
                                                     ("Cache-Control", "no-store")], send_body)
            return
        computed_at = json.loads(text)["computed_at"]
        etag = f'"{computed_at}"'
        headers = [("ETag", etag), ("Cache-Control", f"public, max-age={self._fresh_for(computed_at)}")]
        if self._client_has(etag):
            self._respond(304, None, b"", headers, send_body=False)
            return
        self._respond(200, JSON, text.encode(), headers, send_body)

    def _fresh_for(self, computed_at: str) -> int:
        """Seconds until the next refresh is due: the answer cannot change before then."""
        interval = self.server.options.refresh_interval
        age = (datetime.now(timezone.utc) - datetime.fromisoformat(computed_at)).total_seconds()
        return int(min(interval, max(0.0, interval - age)))

    def _client_has(self, etag: str) -> bool:
        wanted = self.headers.get("If-None-Match")
        if wanted is None:
            return False
        tags = {tag.strip().removeprefix("W/") for tag in wanted.split(",")}
        return "*" in tags or etag in tags


ROUTES = {
    "/": Handler.landing,
    "/healthz": Handler.healthz,
    "/metrics": Handler.metrics,
    "/metrics/flywheel": Handler.metrics,
    "/api/v1/stats/summary": Handler.summary,
    "/api/v1/stats/flywheel": Handler.flywheel,
}

BUSY = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Retry-After: 1\r\nContent-Length: 37\r\nConnection: close\r\n\r\n"
        b"every worker is busy: try again soon\n")


class StatsServer(socketserver.TCPServer):
    """A TCP server handing each connection to a fixed pool of workers; see the module's docstring."""

    allow_reuse_address = True
    routes = ROUTES

    def __init__(self, address: tuple[str, int], reader: DatabaseReader, options: ServerOptions) -> None:
        self.request_queue_size = options.backlog
        self.reader = reader
        self.options = options
        self.workers = concurrent.futures.ThreadPoolExecutor(options.workers, thread_name_prefix="flywheel-http")
        self.slots = threading.BoundedSemaphore(options.workers + options.waiting)
        self.counter_lock = threading.Lock()
        self.scrape_errors = 0
        super().__init__(address, Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def count_scrape(self, failed: bool) -> int:
        with self.counter_lock:
            self.scrape_errors += failed
            return self.scrape_errors

    def process_request(self, request, client_address) -> None:
        if not self.slots.acquire(blocking=False):
            self._refuse(request)
            return
        try:
            self.workers.submit(self._serve, request, client_address)
        except RuntimeError:  # the pool is shut down: the server is stopping
            self.slots.release()
            self.shutdown_request(request)

    def _refuse(self, request: socket.socket) -> None:
        try:
            request.settimeout(0.5)
            request.sendall(BUSY)
        except OSError:
            pass
        self.shutdown_request(request)

    def _serve(self, request, client_address) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 (one bad request must not stop the worker)
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            self.slots.release()

    def handle_error(self, request, client_address) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            # The client went away or stalled: its business, not a fault of the server.
            log.debug("client %s: %s", client_address[0], error)
        else:
            log.exception("request from %s failed", client_address[0])

    def server_close(self) -> None:
        super().server_close()
        self.workers.shutdown(wait=False, cancel_futures=True)


def make_server(database_url: str | None, host: str, port: int, options: ServerOptions = ServerOptions()) -> StatsServer:
    """A stats server listening on host:port (port 0 picks a free one: see server.url)."""
    reader = DatabaseReader(database_url, options.with_timestamps)
    try:
        return StatsServer((host, port), reader, options)
    except OSError as exc:
        raise AddressUnavailable(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}. Choose another --host or --port."
        ) from exc


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def serve(database_url: str | None, host: str, port: int, options: ServerOptions, announce) -> None:
    """Serve until SIGINT or SIGTERM; announce(message) says where, once listening."""
    server = make_server(database_url, host, port, options)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        announce(f"serving the flywheel stats of {server.reader.shown_url} at {server.url}/")
        server.serve_forever()
    except KeyboardInterrupt:
        announce("stopped")
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()
