"""The Prometheus path: an HTTP /metrics endpoint and a textfile for node_exporter.

Both serve the text of ``flywheel.prometheus_text()``: the gauges of the last refresh, computed by
PostgreSQL. The HTTP exporter adds its own health, so a scrape always succeeds and says what went
wrong instead of failing with a 500:

- ``awoooi_flywheel_up`` 1 when the metrics were read from the database, 0 when they could not be
  (server down or unreachable, schema flywheel missing, no refresh yet, any query error);
- ``awoooi_flywheel_exporter_scrape_errors_total`` counts the scrapes that served ``up 0``;
- ``awoooi_flywheel_exporter_scrape_duration_seconds`` is how long reading the database took.

Samples carry no timestamps by default. Prometheus stamps them at scrape time; the refresh's own
time is the gauge ``awoooi_flywheel_last_refresh_timestamp_seconds``, and the stale-data rule
compares it with ``time()``. With explicit timestamps (the old service's way) Prometheus drops
samples it thinks too old, so a stalled refresh would make the series vanish instead of showing
its age. ``with_timestamps`` restores the old behaviour for whoever depends on it.
"""

from __future__ import annotations

import logging
import os
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from sqlalchemy.engine import Engine

from . import db, summary
from .errors import FlywheelError

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
log = logging.getLogger(__name__)


class ExporterAddressUnavailable(FlywheelError):
    """The address or port to listen on is taken or not ours."""


class TextfileNotWritable(FlywheelError):
    """The textfile's folder is missing or not writable."""


@dataclass
class ExporterHealth:
    """The exporter's own counters, shared by the request threads."""

    scrape_errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def failed(self) -> int:
        with self.lock:
            self.scrape_errors += 1
            return self.scrape_errors

    def errors(self) -> int:
        with self.lock:
            return self.scrape_errors


HEALTH = """\
# HELP awoooi_flywheel_up 1 when the exporter read the flywheel metrics from the database, 0 when it could not
# TYPE awoooi_flywheel_up gauge
awoooi_flywheel_up {up}

# HELP awoooi_flywheel_exporter_scrape_errors_total Scrapes that could not read the flywheel metrics
# TYPE awoooi_flywheel_exporter_scrape_errors_total counter
awoooi_flywheel_exporter_scrape_errors_total {errors}

# HELP awoooi_flywheel_exporter_scrape_duration_seconds Seconds this scrape spent reading the database
# TYPE awoooi_flywheel_exporter_scrape_duration_seconds gauge
awoooi_flywheel_exporter_scrape_duration_seconds {duration:.6f}
"""


def scrape(engine: Engine, health: ExporterHealth, with_timestamps: bool = False) -> str:
    """The full exposition for one scrape: the flywheel gauges when readable, then the exporter's health."""
    started = time.monotonic()
    try:
        metrics = summary.prometheus_text(engine, with_timestamps) + "\n"
        up, errors = 1, health.errors()
    # A scrape must answer whatever the database does: every failure becomes up 0 and one log line.
    except Exception as exc:  # noqa: BLE001
        log.warning("scrape failed: %s", _one_line(exc))
        metrics, up, errors = "", 0, health.failed()
    return metrics + HEALTH.format(up=up, errors=errors, duration=time.monotonic() - started)


def _one_line(exc: BaseException) -> str:
    message = str(exc.message if isinstance(exc, FlywheelError) else exc).strip().splitlines()
    return message[0] if message else type(exc).__name__


def make_server(engine: Engine, host: str, port: int, with_timestamps: bool = False) -> ThreadingHTTPServer:
    """An HTTP server answering GET /metrics; port 0 picks a free one (see server.server_address)."""
    health = ExporterHealth()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
            if self.path.split("?", 1)[0] != "/metrics":
                self._send(404, "text/plain; charset=utf-8", "Not found: the metrics are at /metrics\n")
                return
            self._send(200, CONTENT_TYPE, scrape(engine, health, with_timestamps))

        def _send(self, status: int, content_type: str, text: str) -> None:
            body = text.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's signature)
            log.debug("%s %s", self.address_string(), format % args)

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as exc:
        raise ExporterAddressUnavailable(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}. Choose another --host or --port."
        ) from exc
    server.daemon_threads = True
    return server


def write_textfile(path: Path, text: str) -> None:
    """Replace path with text atomically: node_exporter never reads a half-written file.

    The text goes to a temporary file in the same folder (a rename is atomic only within one file
    system), is flushed to disk, then renamed over path. node_exporter's textfile collector reads
    only ``*.prom`` files, so the temporary name ends otherwise.
    """
    folder = path.parent
    try:
        handle = tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=folder, prefix=f".{path.name}.",
                                             suffix=".tmp", delete=False)
    except OSError as exc:
        raise TextfileNotWritable(f"cannot write in {folder}: {exc.strerror or exc}. Create it or fix its permissions.") from exc
    try:
        with handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(handle.name, 0o644)
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def write_metrics_textfile(engine: Engine, path: Path) -> int:
    """Write the flywheel gauges, without timestamps (the textfile collector refuses them), to path.

    Returns the number of bytes written. A failure leaves the previous file as it was, so
    node_exporter's node_textfile_mtime_seconds shows how old it is.
    """
    text = summary.prometheus_text(engine, with_timestamps=False)
    write_textfile(path, text)
    return len(text.encode("utf-8"))


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def serve(database_url: str | None, host: str, port: int, with_timestamps: bool, announce) -> None:
    """Serve /metrics until SIGINT or SIGTERM; announce(message) says where, once listening."""
    # A scrape of a down database must answer within Prometheus's scrape timeout (10 s by default).
    engine = db.create_engine(database_url, connect_args={"connect_timeout": 5}, pool_size=2, max_overflow=2)
    server = make_server(engine, host, port, with_timestamps)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        bound_host, bound_port = server.server_address[:2]
        announce(f"serving the flywheel metrics of {db.mask(engine.url)} at http://{bound_host}:{bound_port}/metrics")
        server.serve_forever()
    except KeyboardInterrupt:
        announce("stopped")
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()
        engine.dispose()
