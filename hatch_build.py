"""Packs the past releases' object files into the wheel.

A checkout reads a past release's SQL from its git history (flywheel_sync/database/releases.py); an
installed wheel has no history, so its build copies every file a past release names, as it was at that
release's commit, to ``flywheel_sync/_data/past_releases/<commit>/<path>``, where the installed package
looks first. That is what lets `flywheel-sync downgrade` work from a wheel without the repository
keeping a copy of each release's files.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class PastReleasesBuildHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict) -> None:
        root = Path(self.root)
        sys.path.insert(0, str(root))
        try:
            from flywheel_sync.database.releases import PAST_RELEASES
        finally:
            sys.path.remove(str(root))
        packed = self._packed = Path(tempfile.mkdtemp(prefix="flywheel-past-releases-"))
        for release, past in PAST_RELEASES.items():
            for path in past.paths:
                shown = subprocess.run(["git", "-C", str(root), "show", f"{past.commit}:{path}"],
                                       capture_output=True, text=True, check=False)
                if shown.returncode != 0:
                    raise RuntimeError(f"release {release}'s {path} is not in this checkout's git history "
                                       f"(commit {past.commit[:12]}): build the wheel from a full git clone")
                target = packed / past.commit / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(shown.stdout)
        build_data["force_include"][str(packed)] = "flywheel_sync/_data/past_releases"

    def finalize(self, version: str, build_data: dict, artifact_path: str) -> None:
        shutil.rmtree(self._packed, ignore_errors=True)
