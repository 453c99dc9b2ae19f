"""The Prometheus text as a file for node_exporter's textfile collector (``summary --textfile``).

The collector reads only ``*.prom`` files in its folder, and may read one at any moment: the file is
replaced atomically (a temporary file in the same folder, flushed, renamed over the target), and the
folder itself is flushed after the rename so that a crash cannot bring back the old file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from sqlalchemy.engine import Engine

from ..errors import FlywheelError
from . import summary

SUFFIX = ".prom"


class TextfileNotWritable(FlywheelError):
    """The textfile's folder is missing or not writable."""


class TextfileNotProm(FlywheelError):
    """The path does not end in .prom, so node_exporter would never read it."""


def require_prom_suffix(path: Path) -> None:
    if path.suffix != SUFFIX:
        raise TextfileNotProm(
            f"{path} does not end in {SUFFIX}: node_exporter's textfile collector reads only *{SUFFIX} files. "
            f"Name it e.g. {path.with_suffix(SUFFIX).name}."
        )


def write_textfile(path: Path, text: str) -> None:
    """Replace path with text atomically: node_exporter never reads a half-written file.

    A rename is atomic only within one file system, hence the temporary file in the same folder; its
    name does not end in .prom, so the collector ignores it. The rename is made durable by flushing
    the folder too (without that, a power cut may leave the old entry).
    """
    require_prom_suffix(path)
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
    _fsync_folder(folder)


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_metrics_textfile(engine: Engine, path: Path) -> int:
    """Write the flywheel gauges, without timestamps (the textfile collector refuses them), to path.

    Returns the number of bytes written. A failure leaves the previous file as it was, so
    node_exporter's node_textfile_mtime_seconds shows how old it is. The path is checked before the
    database is read.
    """
    require_prom_suffix(path)
    text = summary.prometheus_text(engine, with_timestamps=False)
    write_textfile(path, text)
    return len(text.encode("utf-8"))
