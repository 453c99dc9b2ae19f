"""A PostgreSQL cluster from the machine's own server binaries (Debian's PostgreSQL 15), for the
benchmark and the tests that need what the embedded server lacks: JIT (llvmjit), pg_cron, password
authentication and a streaming standby.

The embedded server (:mod:`flywheel_sync.local.embedded`) is PostgreSQL 16 from a wheel, without the JIT
library, with trust authentication; a platform runs its distribution's server with its default
settings. A :class:`Cluster` is that: ``initdb`` with scram-sha-256 for TCP connections (a superuser
``postgres`` with a random password), default settings except where it listens, on 127.0.0.1 and a
free port picked when it starts. :meth:`Cluster.standby` makes a streaming replica of it with
``pg_basebackup -R``.

As root, every server process runs as the system user ``postgres`` (PostgreSQL refuses root), which
then owns the cluster's folder.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import FlywheelError
from .embedded import _free_port, _pid_alive, _wait_for_port

DEBIAN_BINARIES = Path("/usr/lib/postgresql/15/bin")
SYSTEM_USER = "postgres"
PASSWORD_FILE = "superuser.password"


class ClusterUnavailable(FlywheelError):
    """The server binaries (or an extension a caller asked for) are not installed, or a server did not start."""


def missing(binaries: Path = DEBIAN_BINARIES, extension: str | None = None) -> str | None:
    """Why a cluster (with ``extension``'s library) cannot be started here, or None when it can."""
    if not (binaries / "initdb").exists():
        return f"no PostgreSQL server binaries in {binaries} (apt-get install postgresql-15)"
    if os.geteuid() == 0 and not _system_user():
        return f"running as root and there is no system user {SYSTEM_USER} to run the server as"
    if extension and not (_library_folder(binaries) / f"{extension}.so").exists():
        return f"the {extension} library is not installed in {_library_folder(binaries)}"
    return None


def _library_folder(binaries: Path) -> Path:
    return binaries.parent / "lib"


def _system_user() -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        return None


@dataclass
class Cluster:
    """A cluster in ``folder`` (data in ``folder/data``), started on ``port`` once :meth:`start` ran."""

    folder: Path
    binaries: Path = DEBIAN_BINARIES
    port: int | None = None

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def log(self) -> Path:
        return self.folder / "postgres.log"

    @property
    def password(self) -> str:
        return (self.folder / PASSWORD_FILE).read_text().strip()

    def url(self, user: str = "postgres", password: str | None = None, database: str = "postgres") -> str:
        """A postgresql:// URL over TCP; the superuser's password unless another user's is given."""
        secret = password if password is not None else self.password
        return f"postgresql://{user}:{secret}@127.0.0.1:{self.port}/{database}"

    @classmethod
    def create(cls, folder: Path, settings: dict[str, str] | None = None,
               binaries: Path = DEBIAN_BINARIES) -> Cluster:
        """initdb a new cluster in ``folder``; ``settings`` are appended to its postgresql.conf."""
        reason = missing(binaries)
        if reason:
            raise ClusterUnavailable(reason)
        cluster = cls(folder.resolve(), binaries)
        cluster.folder.mkdir(parents=True, exist_ok=True)
        password_file = cluster.folder / PASSWORD_FILE
        password_file.write_text(secrets.token_hex(16) + "\n")
        password_file.chmod(stat.S_IRUSR | stat.S_IWUSR)
        cluster._own_folder()
        cluster._run([binaries / "initdb", "-D", cluster.data, "-U", "postgres", "--encoding=UTF8", "--locale=C",
                      "--auth-local=peer", "--auth-host=scram-sha-256", f"--pwfile={password_file}"], "initdb")
        cluster.configure({"listen_addresses": "'127.0.0.1'", "unix_socket_directories": f"'{cluster.folder}'",
                           **(settings or {})})
        return cluster

    @classmethod
    def open(cls, folder: Path, settings: dict[str, str] | None = None,
             binaries: Path = DEBIAN_BINARIES) -> Cluster:
        """The cluster in ``folder``, created when absent and started when not running."""
        folder = folder.resolve()
        if (folder / "data" / "PG_VERSION").exists():
            cluster = cls(folder, binaries)
        else:
            cluster = cls.create(folder, settings, binaries)
        running = cluster._running_port()
        if running:
            cluster.port = running
        else:
            cluster.start()
        return cluster

    def configure(self, settings: dict[str, str]) -> None:
        """Append settings (values as postgresql.conf spells them) to postgresql.conf; a restart applies them."""
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())

    def start(self) -> None:
        """Start on a free port (a new one each time)."""
        self.port = _free_port()
        self.log.touch()
        self._own_folder()
        self._run([self.binaries / "pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "120",
                   "-o", f"-p {self.port}", "start"], "pg_ctl start")
        _wait_for_port(self.port, self.log)

    def stop(self, mode: str = "fast") -> None:
        if self._running_port():
            self._run([self.binaries / "pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "120", "stop"],
                      "pg_ctl stop")

    def remove(self) -> None:
        """Stop the server at once and delete its folder."""
        self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)

    def standby(self, folder: Path) -> Cluster:
        """A streaming standby of this (running) cluster in ``folder``, started: pg_basebackup -R."""
        replica = Cluster(folder.resolve(), self.binaries)
        replica.folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(self.folder / PASSWORD_FILE, replica.folder / PASSWORD_FILE)
        replica._own_folder()
        # -R writes primary_conninfo (with this connection's password) and standby.signal.
        self._run([self.binaries / "pg_basebackup", "-d", self.url(), "-D", replica.data, "-R",
                   "-X", "stream", "--checkpoint=fast"], "pg_basebackup")
        replica.configure({"unix_socket_directories": f"'{replica.folder}'"})
        replica.start()
        return replica

    def _running_port(self) -> int | None:
        pid_file = self.data / "postmaster.pid"
        if not pid_file.exists():
            return None
        lines = pid_file.read_text().splitlines()
        # postmaster.pid: pid, data directory, start time, port, ...
        return int(lines[3]) if len(lines) > 3 and _pid_alive(int(lines[0])) else None

    def _own_folder(self) -> None:
        """As root: the server's user owns the folder and may traverse the folders above it."""
        if os.geteuid() != 0:
            return
        user = _system_user()
        for parent in self.folder.parents:
            mode = parent.stat().st_mode
            if mode & (stat.S_IXOTH | stat.S_IROTH) != (stat.S_IXOTH | stat.S_IROTH):
                parent.chmod(mode | stat.S_IXOTH | stat.S_IROTH)
        for path in [self.folder, *self.folder.rglob("*")]:
            os.chown(path, user.pw_uid, user.pw_gid)

    def _run(self, command: list, what: str) -> None:
        # The user's own group and no other: root's group would meet the group bits of root's folders.
        run_as = {"user": SYSTEM_USER, "group": _system_user().pw_gid, "extra_groups": []} if os.geteuid() == 0 else {}
        try:
            subprocess.run([str(part) for part in command], check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, cwd=self.folder, **run_as)
        except subprocess.CalledProcessError as exc:
            detail = exc.stderr.decode(errors="replace").strip().splitlines()
            tail = self.log.read_text()[-1500:] if self.log.exists() else ""
            raise ClusterUnavailable(f"{what} failed: {detail[-1] if detail else exc}\n{tail}") from exc


def wait_for_replay(primary_connection, standby_connection, seconds: float = 60.0) -> None:
    """Until the standby has replayed everything the primary had written when this was called
    (psycopg connections, autocommit)."""
    target = primary_connection.execute("select pg_current_wal_lsn()").fetchone()[0]
    deadline = time.monotonic() + seconds
    while not standby_connection.execute(
            "select pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)).fetchone()[0]:
        if time.monotonic() > deadline:
            raise ClusterUnavailable(f"the standby did not replay up to {target} within {seconds:.0f} s")
        time.sleep(0.05)
