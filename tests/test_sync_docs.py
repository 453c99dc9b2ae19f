"""docs/sync.md's systemd unit is one systemd accepts, with the paths a pip install gives."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SYNC_DOC = Path(__file__).resolve().parents[1] / "docs" / "sync.md"
DOCUMENTED_EXECUTABLE = "/opt/flywheel-sync/bin/flywheel-sync"


def documented_unit() -> str:
    return re.search(r"`/etc/systemd/system/flywheel-sync.service`:\n\n```ini\n(.*?)```", SYNC_DOC.read_text(),
                     re.DOTALL).group(1)


def test_the_documented_unit_runs_the_executable_a_pip_install_into_its_venv_gives():
    unit = documented_unit()
    assert f"ExecStart={DOCUMENTED_EXECUTABLE} sync --follow" in unit
    assert "python3 -m venv /opt/flywheel-sync && /opt/flywheel-sync/bin/pip install flywheel_sync-" in SYNC_DOC.read_text()
    assert "Wants=network-online.target" in unit and "After=network-online.target" in unit
    assert "RestartPreventExitStatus=78" in unit


def test_systemd_analyze_verify_accepts_the_documented_unit(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("needs systemd-analyze (apt-get install systemd)")
    # The test's own installation stands for /opt/flywheel-sync: the same layout, bin/flywheel-sync.
    executable = Path(sys.executable).with_name("flywheel-sync")
    environment_file = tmp_path / "flywheel-sync.env"
    environment_file.write_text("FLYWHEEL_DATABASE_URL=postgresql://flywheel_worker@db/platform\n")
    unit = documented_unit().replace(DOCUMENTED_EXECUTABLE, str(executable)) \
        .replace("/etc/flywheel-sync.env", str(environment_file))
    (tmp_path / "flywheel-sync.service").write_text(unit)
    verified = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "flywheel-sync.service")],
                              capture_output=True, text=True)
    assert (verified.returncode, verified.stderr.strip()) == (0, "")
