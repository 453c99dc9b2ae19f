"""Which objects make each release of schema flywheel, and where a past release's texts are.

The head release (:data:`HEAD_RELEASE`) is the files under ``sql/`` as they are, in the order of
:data:`HEAD`. A past release is a commit of this repository and its files' paths there
(:class:`PastRelease`), read from git history or, in a wheel, from the copy hatch_build.py packed when
the wheel was built. flywheel_sync/database/objects.py explains how migrations use them.

Only the standard library here: the wheel's build hook imports this module to know what to pack.
"""

from __future__ import annotations

import functools
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..paths import PACKED_RELEASES_DIR, REPOSITORY_ROOT, SQL_DIR

HEAD_RELEASE = "0008"

HEAD: tuple[str, ...] = (
    # Formatting helper: every JSON function prints times with it.
    "iso8601",
    # Reads one setting; the refresh, the JSON functions and the settings trigger use it.
    "setting",
    # An interval setting in milliseconds: the lock and statement timeouts.
    "setting_milliseconds",
    # Validates flywheel.settings rows (a trigger): bounds, the history tiers' retentions; refuses TRUNCATE.
    "validate_setting",
    # Comments a read model's columns as the columns it shows are commented.
    "comment_columns_like",
    # The latest snapshot as one row, with the settings version it was computed with.
    "summary",
    # The current flow: its definition over the tracked incidents, and the materialized view of it.
    "newest_active_incidents",
    "current_flow",
    # The summary row or a clear error; the output functions below read it.
    "latest_summary",
    "summary_targets",
    "summary_json",
    "flywheel_json",
    "prometheus_text",
    # The triggers on the playbook mirror that keep flywheel.playbook_totals.
    "count_playbooks",
    # How a pass puts a row into its local day.
    "local_day_key_sql",
    # The pieces the refresh calls, each before its callers.
    "clock_ceiling",
    "metrics_clock",
    "refresh_failure",
    "refresh_lock",
    # Source rows the refresh cannot use, counted by reason.
    "unusable_rows",
    # The rows of a source table created in a range: the metrics' only dynamic SQL.
    "created_rows",
    # A settings version when the settings changed; the history tiers folded and pruned; the tier
    # Grafana's time-series panels read for their $__interval.
    "settings_version",
    "record_history",
    "history",
    # The stuck and TYPE-4 counts kept by differences.
    "stuck_counts",
    # The refresh's steps (docs/refresh.md, "The steps"): the run's context they share, how a step is
    # recorded, the mode and what each source table's steps read.
    "refresh_run",
    "timed_step",
    "refresh_mode",
    "refresh_reads",
    # Each rollup's definition as a query over the source: written by the full steps, compared with
    # the incremental rollups by the tests.
    "daily_incidents_from_source",
    "executions_from_source",
    "daily_knowledge_from_source",
    # One step per source table and mode, then the tracked rows (full).
    "refresh_incidents_full",
    "refresh_incidents_incremental",
    "refresh_executions_full",
    "refresh_executions_incremental",
    "refresh_knowledge_full",
    "refresh_knowledge_incremental",
    "rebuild_tracked_rows",
    # The stuck and TYPE-4 counts of the run (and, without tracking, the flow's incidents tracked).
    "count_active_incidents",
    # Each metric's definition, one concern a file (sql/metrics/); the rate falls back to the playbooks.
    "playbook_metrics",
    "incident_metrics",
    "execution_metrics",
    "knowledge_metrics",
    # The snapshot from them, and the current flow's materialized view refreshed; then the state.
    "write_snapshot",
    "save_refresh_state",
    # Takes the lock, picks the mode and calls the steps above.
    "refresh",
    # The scheduler's entry point (pg_cron's CALL): takes the lock, then calls refresh.
    "run_refresh",
    # Grants on everything above, then every SECURITY DEFINER routine handed to flywheel_owner.
    "grants",
    "ownership",
)


@dataclass(frozen=True)
class PastRelease:
    """A release that has landed: where its files are in this repository's history, in creation order."""

    commit: str
    paths: tuple[str, ...]

    def objects(self) -> tuple[str, ...]:
        return tuple(_object_name(path) for path in self.paths)


def _versioned(*objects: tuple[str, int]) -> tuple[str, ...]:
    """Paths of releases 0001-0006, whose files carried a version (``refresh_v05.sql``) until
    commit c539624 replaced the copies by one head file each."""
    views = {"summary", "summary_targets"}
    security = {"grants", "ownership"}
    return tuple(
        f"sql/{'views' if name in views else 'security' if name in security else 'functions'}/{name}_v{version:02d}.sql"
        for name, version in objects)


# The last commit with every versioned file of releases 0001 to 0006.
_VERSIONED_FILES = "c5396242568a99d80504435905cf86a1c0ad1e4e"

_RELEASE_0001 = (("iso8601", 1), ("setting", 1), ("validate_setting", 1), ("summary", 1), ("latest_summary", 1),
                 ("summary_targets", 1), ("summary_json", 1), ("flywheel_json", 1), ("prometheus_text", 1),
                 ("refresh", 1), ("run_refresh", 1), ("grants", 1))
_RELEASE_0004 = (("iso8601", 1), ("setting", 1), ("setting_milliseconds", 1), ("validate_setting", 3),
                 ("summary", 1), ("latest_summary", 1), ("summary_targets", 1), ("summary_json", 1),
                 ("flywheel_json", 1), ("prometheus_text", 1), ("count_playbooks", 1), ("local_day_key_sql", 1),
                 ("clock_ceiling", 1), ("metrics_clock", 1), ("refresh_failure", 1), ("refresh_lock", 1),
                 ("unusable_rows", 1), ("refresh", 4), ("run_refresh", 3), ("grants", 4))

# What each migration's release changed is in the migration's docstring.
PAST_RELEASES: dict[str, PastRelease] = {
    "0001": PastRelease(_VERSIONED_FILES, _versioned(*_RELEASE_0001)),
    "0002": PastRelease(_VERSIONED_FILES, _versioned(
        *_RELEASE_0001[:9], ("refresh", 2), ("run_refresh", 2), ("grants", 2))),
    "0003": PastRelease(_VERSIONED_FILES, _versioned(
        ("iso8601", 1), ("setting", 1), ("validate_setting", 2), *_RELEASE_0001[3:9], ("count_playbooks", 1),
        ("local_day_key_sql", 1), ("refresh", 3), ("run_refresh", 2), ("grants", 3))),
    "0004": PastRelease(_VERSIONED_FILES, _versioned(*_RELEASE_0004)),
    "0005": PastRelease(_VERSIONED_FILES, _versioned(*_RELEASE_0004, ("ownership", 1))),
    "0006": PastRelease(_VERSIONED_FILES, _versioned(
        ("iso8601", 1), ("setting", 1), ("setting_milliseconds", 1), ("validate_setting", 4), ("summary", 2),
        *_RELEASE_0004[5:16], ("unusable_rows", 2), ("settings_version", 1), ("record_history", 1),
        ("history", 1), ("stuck_counts", 1), ("refresh", 5), ("run_refresh", 3), ("grants", 5),
        ("ownership", 1))),
}
# Release 0007 as it landed (the head release until release 0008 opened: docs/migrations.md).
PAST_RELEASES["0007"] = PastRelease("319c0f4e584b0683b1eb9a8ec82ca4c3276ae778", (
        "sql/outputs/iso8601.sql", "sql/settings/setting.sql", "sql/settings/setting_milliseconds.sql",
        "sql/settings/validate_setting.sql", "sql/outputs/comment_columns_like.sql", "sql/outputs/summary.sql",
        "sql/outputs/newest_active_incidents.sql", "sql/outputs/current_flow.sql",
        "sql/outputs/latest_summary.sql", "sql/outputs/summary_targets.sql", "sql/outputs/summary_json.sql",
        "sql/outputs/flywheel_json.sql", "sql/outputs/prometheus_text.sql", "sql/playbooks/count_playbooks.sql",
        "sql/sources/local_day_key_sql.sql", "sql/refresh/clock_ceiling.sql", "sql/refresh/metrics_clock.sql",
        "sql/refresh/refresh_failure.sql", "sql/refresh/refresh_lock.sql", "sql/sources/unusable_rows.sql",
        "sql/sources/created_rows.sql", "sql/settings/settings_version.sql", "sql/refresh/record_history.sql",
        "sql/outputs/history.sql", "sql/refresh/stuck_counts.sql", "sql/refresh/refresh_run.sql",
        "sql/refresh/timed_step.sql", "sql/refresh/refresh_mode.sql", "sql/refresh/refresh_reads.sql",
        "sql/refresh/daily_incidents_from_source.sql", "sql/refresh/executions_from_source.sql",
        "sql/refresh/daily_knowledge_from_source.sql", "sql/refresh/refresh_incidents_full.sql",
        "sql/refresh/refresh_incidents_incremental.sql", "sql/refresh/refresh_executions_full.sql",
        "sql/refresh/refresh_executions_incremental.sql", "sql/refresh/refresh_knowledge_full.sql",
        "sql/refresh/refresh_knowledge_incremental.sql", "sql/refresh/rebuild_tracked_rows.sql",
        "sql/refresh/count_active_incidents.sql", "sql/metrics/playbook_metrics.sql",
        "sql/metrics/incident_metrics.sql", "sql/metrics/execution_metrics.sql",
        "sql/metrics/knowledge_metrics.sql", "sql/refresh/write_snapshot.sql",
        "sql/refresh/save_refresh_state.sql", "sql/refresh/refresh.sql", "sql/refresh/run_refresh.sql",
        "sql/security/grants.sql", "sql/security/ownership.sql",
))


def _object_name(path: str) -> str:
    return re.sub(r"_v\d\d$", "", Path(path).stem)


def head_file(name: str) -> Path:
    matches = sorted(SQL_DIR.glob(f"*/{name}.sql"))
    if len(matches) != 1:
        raise FileNotFoundError(f"expected one file sql/*/{name}.sql, found {len(matches)}")
    return matches[0]


@functools.cache
def past_text(commit: str, path: str) -> str:
    """The file ``path`` as it was at ``commit``: from the wheel's packed copy, else from git."""
    packed = PACKED_RELEASES_DIR / commit / path
    if packed.is_file():
        return packed.read_text()
    try:
        shown = subprocess.run(["git", "-C", str(REPOSITORY_ROOT), "show", f"{commit}:{path}"],
                               capture_output=True, text=True, check=False)
    except OSError:
        shown = None
    if shown is None or shown.returncode != 0:
        from ..errors import PastReleaseUnavailable

        raise PastReleaseUnavailable(
            f"{path} of commit {commit[:12]} is neither packed with this installation nor in a git history "
            "here: downgrade from a full git clone of flywheel-sync or from a wheel built from one")
    return shown.stdout


def release_objects(release: str) -> tuple[str, ...]:
    """The names of the objects of ``release``, in creation order."""
    return HEAD if release == HEAD_RELEASE else PAST_RELEASES[release].objects()


def definitions(release: str) -> list[str]:
    """The texts of the objects of ``release``, in creation order."""
    if release == HEAD_RELEASE:
        return [head_file(name).read_text() for name in HEAD]
    past = PAST_RELEASES[release]
    return [past_text(past.commit, path) for path in past.paths]


def head_files() -> set[Path]:
    """Every object file under sql/ (the platform's reference schemas are not objects of flywheel)."""
    return {path for path in SQL_DIR.glob("*/*.sql") if path.parent.name != "reference"}
