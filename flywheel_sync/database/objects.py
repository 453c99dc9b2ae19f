"""The replaceable objects (views and functions) of schema flywheel, and which version of each a
migration leaves in place.

Every view and function is a file ``sql/<group>/<name>_vNN.sql`` (scenic's scheme): a changed object
gets a new file and the old one stays, so a downgrade can put the old definition back. The highest
version of each file is the current definition. Each file's first ``-- drop:`` line says how to remove
the object, so that a migration can remove an older version it did not write.

A *release* is the ordered list of (object, version) pairs in force after one migration. A migration
that changes any view or function adds a release below and calls :func:`replace`: it drops the
previous release's objects (in reverse order, so dependants go first) and creates its own (in order),
which makes the end state of every upgrade path exactly the files the release names, whatever
revision it started from.

An upgrade over several revisions (``flywheel-sync migrate`` from nothing, or from an older revision)
runs inside :func:`one_release_per_upgrade`: the views and functions of the release it starts from
are dropped once, at the first :func:`replace`, and those of the release it ends at are created
once, after every migration's table changes -- so ``migrate --sql`` prints the end state for a DBA
to read, not every release in turn. A migration's table or data step therefore must not need the
views or functions of its own release; a step that does goes through :func:`after_objects`. Downgrades go release by release: each ``downgrade()``
leaves exactly the objects of the release below it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from alembic import op
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ClauseElement, Executable

from ..paths import SQL_DIR

Release = tuple[tuple[str, int], ...]

RELEASES: dict[str, Release] = {
    "0001": (
        # Formatting helper: every JSON function prints times with it.
        ("iso8601", 1),
        # Reads one setting; the refresh, the JSON functions and the settings trigger use it.
        ("setting", 1),
        # Validates flywheel.settings rows; needs flywheel.setting for nothing, but the trigger must
        # exist before anyone edits settings.
        ("validate_setting", 1),
        # The latest snapshot as one row; everything below reads it.
        ("summary", 1),
        # The summary row or a clear error; the three output functions below read it.
        ("latest_summary", 1),
        ("summary_targets", 1),
        ("summary_json", 1),
        ("flywheel_json", 1),
        ("prometheus_text", 1),
        # Writes snapshots, rollups and the current flow; last of the functions, first to be dropped.
        ("refresh", 1),
        # The scheduler's entry point: calls refresh.
        ("run_refresh", 1),
        # Grants on everything above, so it comes last.
        ("grants", 1),
    ),
    # The incremental refresh (issue 5): refresh takes full => and keeps watermarks and tracked rows;
    # run_refresh takes full => too; the grants name the new signatures and refresh_state.
    "0002": (
        ("iso8601", 1),
        ("setting", 1),
        ("validate_setting", 1),
        ("summary", 1),
        ("latest_summary", 1),
        ("summary_targets", 1),
        ("summary_json", 1),
        ("flywheel_json", 1),
        ("prometheus_text", 1),
        ("refresh", 2),
        # Takes the lock before a REPEATABLE READ snapshot, as the incremental refresh wants.
        ("run_refresh", 2),
        ("grants", 2),
    ),
    # A faster full refresh and a routine one that no longer counts the playbook mirror (issue 5):
    # refresh reads flywheel.playbook_totals, kept by count_playbooks' triggers, puts rows into days
    # with local_day_key_sql and runs full nightly (full_refresh_at, which validate_setting checks);
    # the grants add playbook_totals.
    "0003": (
        ("iso8601", 1),
        ("setting", 1),
        ("validate_setting", 2),
        ("summary", 1),
        ("latest_summary", 1),
        ("summary_targets", 1),
        ("summary_json", 1),
        ("flywheel_json", 1),
        ("prometheus_text", 1),
        ("count_playbooks", 1),
        ("local_day_key_sql", 1),
        ("refresh", 3),
        ("run_refresh", 2),
        ("grants", 3),
    ),
    # The refresh never stops and never lies (issue 14): bounded settings (validate_setting, which also
    # refuses TRUNCATE); as_of bounded (metrics_clock) and watermarks capped (clock_ceiling); source rows
    # it cannot use skipped and counted (unusable_rows); every failure recorded with its cause named
    # (refresh_failure); a row lock instead of the advisory one (refresh_lock); jit off in the refresh
    # (issue 15). run_refresh waits through wait_for_refresh_lock; the grants name it.
    "0004": (
        ("iso8601", 1),
        ("setting", 1),
        # An interval setting in milliseconds: the lock and statement timeouts; reads flywheel.setting.
        ("setting_milliseconds", 1),
        ("validate_setting", 3),
        ("summary", 1),
        ("latest_summary", 1),
        ("summary_targets", 1),
        ("summary_json", 1),
        ("flywheel_json", 1),
        ("prometheus_text", 1),
        ("count_playbooks", 1),
        ("local_day_key_sql", 1),
        # The pieces the refresh calls, each before its callers.
        ("clock_ceiling", 1),
        ("metrics_clock", 1),
        ("refresh_failure", 1),
        ("refresh_lock", 1),
        ("unusable_rows", 1),
        ("refresh", 4),
        ("run_refresh", 3),
        ("grants", 4),
    ),
}
# Least privilege (issue 14): every SECURITY DEFINER routine is handed to flywheel_owner (a NOLOGIN
# role that reads the sources and writes schema flywheel, nothing else) and runs with
# row_security = off. Last, after every routine it hands over and after the grants.
RELEASES["0005"] = (*RELEASES["0004"], ("ownership", 1))
# Costs that follow change and history in tiers (issues 13 and 15).
RELEASES["0006"] = (
    ("iso8601", 1),
    ("setting", 1),
    ("setting_milliseconds", 1),
    # Knows the history tiers' retention settings.
    ("validate_setting", 4),
    # Joins the snapshot's settings version instead of reading a copy of the settings.
    ("summary", 2),
    ("latest_summary", 1),
    ("summary_targets", 1),
    ("summary_json", 1),
    ("flywheel_json", 1),
    ("prometheus_text", 1),
    ("count_playbooks", 1),
    ("local_day_key_sql", 1),
    ("clock_ceiling", 1),
    ("metrics_clock", 1),
    ("refresh_failure", 1),
    ("refresh_lock", 1),
    # Looks up in the whole table only the keys of rows the refresh has not counted before.
    ("unusable_rows", 2),
    # The refresh writes a settings version when the settings changed, folds each snapshot into its
    # 1-minute, 5-minute, 1-hour, 6-hour and 12-hour buckets and prunes every tier (record_history); Grafana's
    # time-series panels read the tier flywheel.history picks for their $__interval.
    ("settings_version", 1),
    ("record_history", 1),
    ("history", 1),
    # Keeps the stuck and TYPE-4 counts by differences; the refresh calls it.
    ("stuck_counts", 1),
    ("refresh", 5),
    ("run_refresh", 3),
    # Adds the tiers, settings_versions and flywheel.history for the reader.
    ("grants", 5),
    ("ownership", 1),
)

_DROP_LINE = re.compile(r"^--\s*drop:\s*(?P<statement>.+?)\s*$", re.MULTILINE)


def sql_file(name: str, version: int) -> Path:
    matches = sorted(SQL_DIR.glob(f"*/{name}_v{version:02d}.sql"))
    if len(matches) != 1:
        raise FileNotFoundError(f"expected one file sql/*/{name}_v{version:02d}.sql, found {len(matches)}")
    return matches[0]


def definition(name: str, version: int) -> str:
    return sql_file(name, version).read_text()


def drop_statement(name: str, version: int) -> str | None:
    """The file's ``-- drop:`` statement; None for files with nothing to drop (grants)."""
    match = _DROP_LINE.search(definition(name, version))
    if match is None:
        raise ValueError(f"{sql_file(name, version)} has no '-- drop:' line")
    statement = match["statement"]
    return None if statement.lower() in ("none", "nothing") else statement


def current_versions() -> dict[str, int]:
    """The highest version of every object file in sql/: what the newest release must name."""
    versions: dict[str, int] = {}
    for path in SQL_DIR.glob("*/*_v[0-9][0-9].sql"):
        name, _, number = path.stem.rpartition("_v")
        versions[name] = max(versions.get(name, 0), int(number))
    return versions


Executor = Callable[..., None]


def execute(sql: str, run: Executor | None = None) -> None:
    # A file is handed to the server as it is: no bind parameters (':name'), no '%' placeholders.
    (run or op.execute)(_Verbatim(sql), execution_options={"no_parameters": True})


def create(release: str, run: Executor | None = None, heading: str = "") -> None:
    """Create the objects of ``release`` in order; ``heading`` (a comment) opens the first one's text."""
    for index, (name, version) in enumerate(RELEASES[release]):
        execute((heading if index == 0 else "") + definition(name, version), run)


def drop(release: str) -> None:
    for name, version in reversed(RELEASES[release]):
        statement = drop_statement(name, version)
        if statement:
            execute(statement)


@dataclass
class _Upgrade:
    """The releases an upgrade run has passed: whether it dropped its first, and the one it ends at."""

    dropped_first: bool = False
    last: str | None = None
    after_objects: list[str] = field(default_factory=list)


_upgrade: _Upgrade | None = None


def replace(old: str | None, new: str | None) -> None:
    """Move the objects from release ``old`` to release ``new`` (either may be None: nothing).

    Inside :func:`one_release_per_upgrade` only the first release is dropped here, and the last is
    created when the upgrade ends."""
    if _upgrade is None:
        if old is not None:
            drop(old)
        if new is not None:
            create(new)
        return
    if not _upgrade.dropped_first:
        if old is not None:
            drop(old)
        _upgrade.dropped_first = True
    _upgrade.last = new


def after_objects(sql: str) -> None:
    """Run ``sql``, which needs the views and functions of the release being installed, once they
    exist: at once outside :func:`one_release_per_upgrade`, after the end release is created inside it
    (so it may only use what that release still has)."""
    if _upgrade is None:
        execute(sql)
    else:
        _upgrade.after_objects.append(sql)


@contextlib.contextmanager
def one_release_per_upgrade(run: Executor) -> Iterator[None]:
    """Around an upgrade's migrations: create the objects of the release it ends at once, with
    ``run`` (alembic's ``context.execute``, which works online and offline), after them all."""
    global _upgrade
    _upgrade = _Upgrade()
    try:
        yield
        if _upgrade.last is not None:
            create(_upgrade.last, run, heading=f"-- The views and functions of release {_upgrade.last}, each once "
                                               "(flywheel_sync/database/objects.py):\n\n")
        for sql in _upgrade.after_objects:
            execute(sql, run)
    finally:
        _upgrade = None


class _Verbatim(Executable, ClauseElement):
    """A SQL string executed and printed exactly as written."""

    inherit_cache = False

    def __init__(self, sql: str) -> None:
        self.sql = sql


@compiles(_Verbatim)
def _compile_verbatim(element: _Verbatim, compiler, **kw) -> str:
    return element.sql
