"""The Prometheus path: /metrics over real HTTP, and the textfile for node_exporter."""

from __future__ import annotations

import math
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from flywheel_sync import db, exporter, summary
from flywheel_sync.cli import cli
from tests.platform import AS_OF, HOUR, add_executions, refresh

# Computed when read, so it differs between two reads of the same refresh.
AGE = "awoooi_flywheel_refresh_age_seconds"


@contextmanager
def serving(engine, with_timestamps: bool = False):
    server = exporter.make_server(engine, "127.0.0.1", 0, with_timestamps)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def get(url: str):
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, response.headers["Content-Type"], response.read().decode("utf-8")


def samples(text: str) -> dict[str, object]:
    """Every sample of the exposition by name and labels."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(text: str, name: str) -> float:
    return samples(text)[(name, ())].value


@pytest.fixture
def refreshed(engine, connection):
    add_executions(connection, successes=4, failures=8, created_at=AS_OF - HOUR)
    refresh(connection)
    connection.commit()
    return engine


def test_metrics_over_http_are_the_sql_text_plus_the_exporter_health(refreshed):
    with serving(refreshed) as url:
        status, content_type, text = get(f"{url}/metrics")
    expected = samples(summary.prometheus_text(refreshed))
    served = samples(text)
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
    assert {key: sample for key, sample in served.items() if key[0].startswith("awoooi_flywheel_")
            and not key[0].startswith(("awoooi_flywheel_up", "awoooi_flywheel_exporter_")) and key[0] != AGE} \
        == {key: sample for key, sample in expected.items() if key[0] != AGE}
    assert served[(AGE, ())].value >= 0
    assert value(text, "awoooi_flywheel_execution_success_rate") == pytest.approx(1 / 3, abs=1e-4)
    assert value(text, "awoooi_flywheel_up") == 1
    assert value(text, "awoooi_flywheel_exporter_scrape_errors_total") == 0
    assert value(text, "awoooi_flywheel_exporter_scrape_duration_seconds") > 0


def test_samples_carry_no_timestamps_by_default(refreshed):
    with serving(refreshed) as url:
        _, _, text = get(f"{url}/metrics")
    assert all(sample.timestamp is None for sample in samples(text).values())


def test_with_timestamps_stamps_the_flywheel_gauges_with_the_refresh_time(refreshed):
    with serving(refreshed, with_timestamps=True) as url:
        _, _, text = get(f"{url}/metrics")
    stamped = samples(text)[("awoooi_flywheel_playbook_count", ())]
    assert float(stamped.timestamp) == pytest.approx(AS_OF.timestamp())


def test_insufficient_sample_is_served_as_nan(engine, connection):
    refresh(connection)
    connection.commit()
    with serving(engine) as url:
        _, _, text = get(f"{url}/metrics")
    assert math.isnan(value(text, "awoooi_flywheel_execution_success_rate"))


def test_database_down_gives_up_0_with_http_200_and_counts_the_errors():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    engine = db.create_engine(f"postgresql://flywheel@127.0.0.1:{closed_port}/flywheel", poolclass=sa.pool.NullPool)
    with serving(engine) as url:
        first = get(f"{url}/metrics")
        status, _, text = get(f"{url}/metrics")
    engine.dispose()
    assert first[0] == status == 200
    assert value(text, "awoooi_flywheel_up") == 0
    assert value(text, "awoooi_flywheel_exporter_scrape_errors_total") == 2
    assert not any(name.startswith("awoooi_flywheel_playbook") for name, _ in samples(text))


def test_database_never_refreshed_gives_up_0(engine):
    with serving(engine) as url:
        status, _, text = get(f"{url}/metrics")
    assert status == 200 and value(text, "awoooi_flywheel_up") == 0


def test_other_paths_are_404():
    engine = db.create_engine("postgresql://flywheel@127.0.0.1:1/flywheel")
    with serving(engine) as url, pytest.raises(urllib.error.HTTPError) as error:
        get(f"{url}/")
    assert error.value.code == 404


def test_listening_on_a_taken_port_says_to_choose_another():
    engine = db.create_engine("postgresql://flywheel@127.0.0.1:1/flywheel")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(exporter.ExporterAddressUnavailable, match="Choose another --host or --port"):
            exporter.make_server(engine, "127.0.0.1", taken.getsockname()[1])


def test_textfile_holds_the_sql_text_without_timestamps_and_no_temporary_file_remains(refreshed, tmp_path):
    path = tmp_path / "flywheel.prom"
    path.write_text("old\n")
    exporter.write_metrics_textfile(refreshed, path)
    written = samples(path.read_text())
    assert {key for key in written} == {key for key in samples(summary.prometheus_text(refreshed))}
    assert all(sample.timestamp is None for sample in written.values())
    assert [entry.name for entry in tmp_path.iterdir()] == ["flywheel.prom"]


def test_textfile_write_that_fails_leaves_the_old_file(tmp_path):
    path = tmp_path / "flywheel.prom"
    path.write_text("old\n")

    with pytest.raises(UnicodeEncodeError):
        exporter.write_textfile(path, "awoooi_flywheel_up 1\n\ud800")
    assert path.read_text() == "old\n"
    assert [entry.name for entry in tmp_path.iterdir()] == ["flywheel.prom"]


def test_textfile_in_a_missing_folder_says_what_to_do(tmp_path):
    with pytest.raises(exporter.TextfileNotWritable, match="Create it or fix its permissions"):
        exporter.write_textfile(tmp_path / "missing" / "flywheel.prom", "text\n")


def test_summary_textfile_option_writes_the_file(refreshed, database_url, tmp_path):
    path = tmp_path / "flywheel.prom"
    result = CliRunner().invoke(cli, ["summary", "--database-url", database_url, "--textfile", str(path)])
    assert result.exit_code == 0, result.output
    assert f"to {path}" in result.output
    assert value(path.read_text(), "awoooi_flywheel_execution_success_rate") == pytest.approx(1 / 3, abs=1e-4)


def test_summary_textfile_refuses_timestamps(database_url, tmp_path):
    result = CliRunner().invoke(cli, ["summary", "--database-url", database_url,
                                      "--textfile", str(tmp_path / "flywheel.prom"), "--with-timestamps"])
    assert result.exit_code == 2
    assert "without timestamps" in result.output


def test_exporter_command_serves_until_sigterm(refreshed, database_url):
    process = subprocess.Popen([sys.executable, "-m", "flywheel_sync", "exporter", "--port", "0",
                                "--database-url", database_url],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        announced = process.stdout.readline()
        url = announced.rsplit(" at ", 1)[1].strip()
        status, _, text = get(url)
        assert status == 200 and value(text, "awoooi_flywheel_up") == 1
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "stopped" in stdout
