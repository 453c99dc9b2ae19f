"""The stats server over real HTTP against real PostgreSQL, healthy and under faults; the textfile."""

from __future__ import annotations

import json
import logging
import math
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from flywheel_sync.cli import cli
from flywheel_sync.database import db
from flywheel_sync.outputs import stats_server, summary, textfile
from tests.serving import serving
from tests.platform import AS_OF, HOUR, add_executions, eventually, refresh

# Computed when read, so it differs between two reads of the same refresh.
AGE = "awoooi_flywheel_refresh_age_seconds"
LOGGER = "flywheel_sync.outputs.stats_server"


def request(url: str, method: str = "GET", headers: dict | None = None, timeout: float = 30):
    """(status, headers, body) of one request; an HTTP error status is an answer too."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method, headers=headers or {}),
                                    timeout=timeout) as response:
            return response.status, response.headers, response.read().decode("utf-8")
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode("utf-8")


def get(url: str, **options) -> str:
    status, _, body = request(url, **options)
    assert status == 200, body
    return body


def timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def samples(text: str) -> dict[str, object]:
    """Every sample of the exposition by name and labels."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(text: str, name: str) -> float:
    return samples(text)[(name, ())].value


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"postgresql://flywheel@127.0.0.1:{probe.getsockname()[1]}/flywheel"


def sql_text(engine, function: str) -> str:
    with engine.connect() as connection:
        return connection.execute(sa.text(f"select flywheel.{function}()::text")).scalar_one()


@pytest.fixture
def refreshed(engine, connection):
    add_executions(connection, successes=4, failures=8, created_at=AS_OF - HOUR)
    refresh(connection)
    connection.commit()
    return engine


@pytest.fixture
def snapshots_locked(refreshed):
    """flywheel.snapshots locked ACCESS EXCLUSIVE by another session for as long as the test runs."""
    with refreshed.connect() as holder:
        holder.execute(sa.text("lock table flywheel.snapshots in access exclusive mode"))
        yield
        holder.rollback()


# What it serves ------------------------------------------------------------------------------------

def test_metrics_over_http_are_the_sql_text_plus_the_server_health(refreshed, database_url):
    with serving(database_url) as url:
        status, headers, text = request(f"{url}/metrics")
    expected = samples(summary.prometheus_text(refreshed))
    served = samples(text)
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert {key: sample for key, sample in served.items() if key[0].startswith("awoooi_flywheel_")
            and not key[0].startswith(("awoooi_flywheel_up", "awoooi_flywheel_exporter_")) and key[0] != AGE} \
        == {key: sample for key, sample in expected.items() if key[0] != AGE}
    assert served[(AGE, ())].value >= 0
    assert value(text, "awoooi_flywheel_execution_success_rate") == pytest.approx(1 / 3, abs=1e-4)
    assert value(text, "awoooi_flywheel_up") == 1
    assert value(text, "awoooi_flywheel_exporter_scrape_errors_total") == 0
    assert value(text, "awoooi_flywheel_exporter_scrape_duration_seconds") > 0


def test_old_metrics_path_serves_the_same_gauges(refreshed, database_url):
    with serving(database_url) as url:
        old, new = get(f"{url}/metrics/flywheel"), get(f"{url}/metrics")
    assert {key for key in samples(old)} == {key for key in samples(new)}


def test_samples_carry_no_timestamps_by_default(refreshed, database_url):
    with serving(database_url) as url:
        text = get(f"{url}/metrics")
    assert all(sample.timestamp is None for sample in samples(text).values())


def test_with_timestamps_stamps_the_flywheel_gauges_with_the_refresh_time(refreshed, database_url):
    with serving(database_url, with_timestamps=True) as url:
        text = get(f"{url}/metrics")
    stamped = samples(text)[("awoooi_flywheel_playbook_count", ())]
    assert float(stamped.timestamp) == pytest.approx(AS_OF.timestamp())


def test_insufficient_sample_is_served_as_nan(engine, connection, database_url):
    refresh(connection)
    connection.commit()
    with serving(database_url) as url:
        text = get(f"{url}/metrics")
    assert math.isnan(value(text, "awoooi_flywheel_execution_success_rate"))


@pytest.mark.parametrize("path, function", [("/api/v1/stats/summary", "summary_json"),
                                            ("/api/v1/stats/flywheel", "flywheel_json")])
def test_json_endpoints_serve_exactly_the_sql_functions_with_an_etag_from_computed_at(refreshed, database_url,
                                                                                    path, function):
    with serving(database_url, refresh_interval=60) as url:
        status, headers, body = request(url + path)
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert body == sql_text(refreshed, function)
    assert headers["ETag"] == f'"{json.loads(body)["computed_at"]}"'
    # The refresh of AS_OF is long past, so the next one is overdue: a client must not cache.
    assert headers["Cache-Control"] == "public, max-age=0"


def test_json_may_be_cached_until_the_next_refresh_is_due(engine, connection, database_url):
    refresh(connection, as_of=datetime.now(timezone.utc))
    connection.commit()
    with serving(database_url, refresh_interval=60) as url:
        _, headers, _ = request(f"{url}/api/v1/stats/summary")
    max_age = int(headers["Cache-Control"].removeprefix("public, max-age="))
    assert 0 < max_age <= 60


def test_json_answers_304_without_a_body_when_the_client_has_the_etag(refreshed, database_url):
    with serving(database_url) as url:
        _, headers, _ = request(f"{url}/api/v1/stats/summary")
        status, again, body = request(f"{url}/api/v1/stats/summary", headers={"If-None-Match": headers["ETag"]})
        other, _, _ = request(f"{url}/api/v1/stats/summary", headers={"If-None-Match": '"2020-01-01T00:00:00+00:00"'})
    assert (status, body, again["ETag"]) == (304, "", headers["ETag"])
    assert other == 200


def test_landing_page_links_every_endpoint(database_url):
    with serving(database_url) as url:
        status, headers, body = request(f"{url}/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    for path in ("/metrics", "/metrics/flywheel", "/api/v1/stats/summary", "/api/v1/stats/flywheel", "/healthz"):
        assert f'href="{path}"' in body


def test_server_header_is_the_name_without_trailing_space():
    with serving(closed_port_url()) as url:
        _, headers, _ = request(f"{url}/healthz")
    assert headers["Server"] == "flywheel-sync"


def test_healthz_answers_without_the_database():
    with serving(closed_port_url()) as url:
        status, _, body = request(f"{url}/healthz")
    assert (status, body) == (200, "ok\n")


@pytest.mark.parametrize("path", ["/", "/healthz", "/metrics", "/metrics/flywheel", "/api/v1/stats/summary",
                                  "/api/v1/stats/flywheel"])
def test_head_answers_every_path_with_the_headers_of_get_and_no_body(refreshed, database_url, path):
    with serving(database_url) as url:
        get_status, get_headers, get_body = request(url + path)
        status, headers, body = request(url + path, method="HEAD")
    assert (status, body) == (get_status, "")
    assert headers["Content-Type"] == get_headers["Content-Type"]
    if not path.startswith("/metrics"):  # a scrape's duration, hence its length, varies
        assert headers["Content-Length"] == str(len(get_body.encode()))


def test_options_says_which_methods_are_allowed(database_url):
    with serving(database_url) as url:
        status, headers, body = request(f"{url}/metrics", method="OPTIONS")
    assert (status, body) == (204, "")
    assert headers["Allow"] == "GET, HEAD, OPTIONS"


@pytest.mark.parametrize("method, status", [("POST", 405), ("DELETE", 405), ("BREW", 501)])
def test_other_methods_are_refused_in_plain_text_with_the_allowed_ones(database_url, method, status):
    with serving(database_url) as url:
        answered, headers, body = request(f"{url}/metrics", method=method)
    assert answered == status
    assert headers["Content-Type"] == "text/plain; charset=utf-8" and "<" not in body
    assert headers["Allow"] == "GET, HEAD, OPTIONS"


def test_other_paths_are_404_and_say_which_paths_exist(database_url):
    with serving(database_url) as url:
        status, _, body = request(f"{url}/nothing")
    assert status == 404 and "/api/v1/stats/summary" in body


def test_listening_on_a_taken_port_says_to_choose_another(database_url):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(stats_server.AddressUnavailable, match="Choose another --host or --port"):
            stats_server.make_server(database_url, "127.0.0.1", taken.getsockname()[1])


# A database that cannot answer -----------------------------------------------------------------------

def test_database_down_gives_up_0_with_http_200_and_counts_the_errors():
    with serving(closed_port_url()) as url:
        first = request(f"{url}/metrics")
        status, _, text = request(f"{url}/metrics")
    assert first[0] == status == 200
    assert value(text, "awoooi_flywheel_up") == 0
    assert value(text, "awoooi_flywheel_exporter_scrape_errors_total") == 2
    assert not any(name.startswith("awoooi_flywheel_playbook") for name, _ in samples(text))


@pytest.mark.parametrize("path", ["/api/v1/stats/summary", "/api/v1/stats/flywheel"])
def test_json_endpoints_answer_503_with_a_json_error_and_retry_after_when_the_database_is_down(path):
    with serving(closed_port_url()) as url:
        status, headers, body = request(url + path)
    assert status == 503
    assert headers["Content-Type"] == "application/json" and int(headers["Retry-After"]) > 0
    assert "cannot reach the database" in json.loads(body)["detail"]


def test_the_503_body_says_why_in_one_generic_line_without_the_database_url():
    down = closed_port_url()
    with serving(down) as url:
        _, _, body = request(url + "/api/v1/stats/summary")
    detail = json.loads(body)["detail"]
    assert detail == "cannot reach the database; the server's log says more"
    assert down.rpartition("@")[2].split("/")[0] not in body


def test_database_never_refreshed_gives_up_0_and_the_log_says_to_refresh(database_url, caplog):
    with caplog.at_level(logging.INFO, LOGGER), serving(database_url) as url:
        text = get(f"{url}/metrics")
    assert value(text, "awoooi_flywheel_up") == 0
    assert "run `flywheel-sync refresh`" in caplog.text


# A loaded 2-core CI machine can delay any answer by a second or two, so the time bounds below tell
# a short deadline (1-1.5 s: the scrape timeout less 0.5 s, or --deadline) from the default one (8 s),
# not milliseconds; each answer came while the database was still locked or frozen, so none waited
# for it.
ANSWERED_BY_THE_SHORT_DEADLINE = 4.0


def test_locked_table_answers_up_0_within_the_scrape_timeout_prometheus_announces(database_url, snapshots_locked,
                                                                                   caplog):
    with caplog.at_level(logging.INFO, LOGGER), serving(database_url) as url:
        (status, _, text), seconds = timed(lambda: request(f"{url}/metrics",
                                                           headers={"X-Prometheus-Scrape-Timeout-Seconds": "2"}))
    assert status == 200 and value(text, "awoooi_flywheel_up") == 0
    assert seconds < ANSWERED_BY_THE_SHORT_DEADLINE
    assert "lock" in caplog.text


def test_locked_table_answers_the_json_endpoints_503_within_the_deadline(refreshed, database_url, snapshots_locked):
    with serving(database_url, deadline=1.0) as url:
        (status, headers, _), seconds = timed(lambda: request(f"{url}/api/v1/stats/summary"))
    assert status == 503 and "Retry-After" in headers
    assert seconds < ANSWERED_BY_THE_SHORT_DEADLINE


def test_hung_database_answers_up_0_by_the_scrape_timeout_not_the_default_deadline_and_recovers(refreshed, relay):
    with serving(relay.url) as url:
        assert value(get(f"{url}/metrics"), "awoooi_flywheel_up") == 1
        relay.freeze()
        timeout = {"X-Prometheus-Scrape-Timeout-Seconds": "1.5"}
        answers = [timed(lambda: get(f"{url}/metrics", headers=timeout)) for _ in range(3)]
        relay.thaw()
        assert all(value(text, "awoooi_flywheel_up") == 0 and seconds < ANSWERED_BY_THE_SHORT_DEADLINE
                   for text, seconds in answers)
        # The first scrape after the thaw may still meet the connection the hung query left behind;
        # a later one must read the database again.
        assert eventually(lambda: value(get(f"{url}/metrics"), "awoooi_flywheel_up") == 1)


def test_without_the_scrape_timeout_header_a_request_waits_at_most_the_deadline(refreshed, relay):
    with serving(relay.url, deadline=1.0) as url:
        relay.freeze()
        text, seconds = timed(lambda: get(f"{url}/metrics"))
        relay.thaw()
    assert value(text, "awoooi_flywheel_up") == 0 and seconds < ANSWERED_BY_THE_SHORT_DEADLINE


def test_log_says_one_line_per_change_of_the_database_state(refreshed, relay, caplog):
    with caplog.at_level(logging.INFO, LOGGER), serving(relay.url, deadline=0.5) as url:
        get(f"{url}/metrics")
        relay.freeze()
        for _ in range(3):
            get(f"{url}/metrics")
        relay.thaw()
        for _ in range(2):
            get(f"{url}/metrics")
    lines = [record.getMessage() for record in caplog.records if record.name == LOGGER]
    assert len(lines) == 3, lines
    assert "answers" in lines[0] and "did not answer within 0.5 s" in lines[1] and "is back" in lines[2]


def test_a_refused_password_is_logged_as_a_refused_login_not_an_unreachable_server(database_url, caplog):
    wrong = db.parse_url(database_url).set(password="not-the-password").render_as_string(hide_password=False)
    with caplog.at_level(logging.INFO, LOGGER), serving(wrong) as url:
        text = get(f"{url}/metrics")
    assert value(text, "awoooi_flywheel_up") == 0
    assert "refused the login" in caplog.text and "cannot reach" not in caplog.text
    assert "not-the-password" not in caplog.text


def test_missing_grant_says_which_grant_to_give(refreshed, database_url, caplog):
    role = f"flywheel_test_nogrant_{uuid.uuid4().hex[:8]}"
    with refreshed.connect() as admin:
        admin.execute(sa.text(f"create role {role} login password '{role}'"))
        admin.commit()
    try:
        login = db.parse_url(database_url).set(username=role, password=role).render_as_string(hide_password=False)
        with caplog.at_level(logging.INFO, LOGGER), serving(login) as url:
            text = get(f"{url}/metrics")
            status, _, body = request(f"{url}/api/v1/stats/summary")
    finally:
        with refreshed.connect() as admin:
            admin.execute(sa.text(f"drop role {role}"))
            admin.commit()
    assert value(text, "awoooi_flywheel_up") == 0 and status == 503
    assert f"GRANT flywheel_reader TO {role};" in caplog.text
    assert json.loads(body)["detail"] == ("the server's login may not read schema flywheel; "
                                          "the server's log says more")


# Clients that misbehave, and many clients ---------------------------------------------------------------

def test_200_parallel_scrapes_are_all_answered(refreshed, database_url):
    with serving(database_url) as url, ThreadPoolExecutor(200) as clients:
        texts = list(clients.map(lambda _: get(f"{url}/metrics"), range(200)))
    assert all(value(text, "awoooi_flywheel_up") == 1 for text in texts)


def test_clients_that_never_finish_their_request_are_dropped_and_do_not_block_a_scrape(refreshed, database_url):
    stalled = []
    with serving(database_url, client_timeout=1.0) as url:
        port = int(url.rsplit(":", 1)[1])
        for _ in range(50):
            client = socket.create_connection(("127.0.0.1", port))
            client.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            stalled.append(client)
        text, seconds = timed(lambda: get(f"{url}/metrics"))
        for client in stalled:
            client.settimeout(10)
            assert client.recv(1024) == b"", "the server still holds a client that never finished its request"
            client.close()
    assert value(text, "awoooi_flywheel_up") == 1 and seconds < ANSWERED_BY_THE_SHORT_DEADLINE


def test_a_client_that_goes_away_is_logged_quietly(refreshed, database_url, caplog, capfd):
    with caplog.at_level(logging.DEBUG, LOGGER), serving(database_url) as url:
        port = int(url.rsplit(":", 1)[1])
        for _ in range(5):
            client = socket.create_connection(("127.0.0.1", port))
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            client.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            client.close()
        assert value(get(f"{url}/metrics"), "awoooi_flywheel_up") == 1
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert "Traceback" not in capfd.readouterr().err


# The command ------------------------------------------------------------------------------------------

@contextmanager
def serve_command(command: str, database_url: str, *options: str):
    """`flywheel-sync COMMAND` in its own process; its base URL, then its stdout once SIGTERM stopped it."""
    process = subprocess.Popen([sys.executable, "-m", "flywheel_sync", command, "--port", "0",
                                "--database-url", database_url, *options],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outcome = {}
    try:
        announced = process.stdout.readline()
        yield announced.rsplit(" at ", 1)[1].strip(), outcome
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            outcome["stdout"], _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise
        outcome["returncode"] = process.returncode


@pytest.mark.parametrize("command", ["serve", "exporter"])
def test_serve_command_and_its_old_name_serve_until_sigterm(refreshed, database_url, command):
    with serve_command(command, database_url) as (url, outcome):
        assert value(get(f"{url}metrics"), "awoooi_flywheel_up") == 1
    assert outcome["returncode"] == 0
    assert "stopped" in outcome["stdout"]


def test_serve_stops_on_sigterm_while_a_read_hangs_on_the_database(refreshed, relay):
    def waiting_for_the_lock() -> bool:
        with refreshed.connect() as observer:
            return observer.execute(sa.text(
                "select count(*) from pg_stat_activity"
                " where application_name = 'flywheel-sync serve' and wait_event_type = 'Lock'")).scalar_one() == 1

    with refreshed.connect() as holder, ThreadPoolExecutor(1) as client:
        holder.execute(sa.text("lock table flywheel.snapshots in access exclusive mode"))
        with serve_command("serve", relay.url, "--deadline", "3") as (url, outcome):
            scrape = client.submit(get, f"{url}metrics")
            until(waiting_for_the_lock)
            # The read is under way; now its server stops answering, as a SIGSTOPped one would.
            relay.freeze()
            assert value(scrape.result(), "awoooi_flywheel_up") == 0
            stopping = time.monotonic()
        holder.rollback()
    relay.thaw()
    assert outcome["returncode"] == 0 and time.monotonic() - stopping < 10


def until(check, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"{check.__name__} not within {seconds} s"
        time.sleep(0.05)


# Lint ---------------------------------------------------------------------------------------------------

# The old service fixed these names; dashboards and rules use them, so they stay (docs/stats-server.md).
LINT_EXCEPTIONS = {"awoooi_flywheel_playbook_count", "awoooi_flywheel_km_unvectorized_count",
                   "awoooi_flywheel_type4_count"}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (apt-get install prometheus)")
def test_promtool_check_metrics_objects_only_to_the_documented_old_names(refreshed, database_url):
    with serving(database_url) as url:
        text = get(f"{url}/metrics")
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert {line.split()[0] for line in complaints} == LINT_EXCEPTIONS, complaints
    assert all('should not have "_count" suffix' in line for line in complaints), complaints


# Textfile -----------------------------------------------------------------------------------------------

def test_textfile_holds_the_sql_text_without_timestamps_and_no_temporary_file_remains(refreshed, tmp_path):
    path = tmp_path / "flywheel.prom"
    path.write_text("old\n")
    textfile.write_metrics_textfile(refreshed, path)
    written = samples(path.read_text())
    assert {key for key in written} == {key for key in samples(summary.prometheus_text(refreshed))}
    assert all(sample.timestamp is None for sample in written.values())
    assert [entry.name for entry in tmp_path.iterdir()] == ["flywheel.prom"]


def test_textfile_write_that_fails_leaves_the_old_file(tmp_path):
    path = tmp_path / "flywheel.prom"
    path.write_text("old\n")
    with pytest.raises(UnicodeEncodeError):
        textfile.write_textfile(path, "awoooi_flywheel_up 1\n\ud800")
    assert path.read_text() == "old\n"
    assert [entry.name for entry in tmp_path.iterdir()] == ["flywheel.prom"]


def test_textfile_in_a_missing_folder_says_what_to_do(tmp_path):
    with pytest.raises(textfile.TextfileNotWritable, match="Create it or fix its permissions"):
        textfile.write_textfile(tmp_path / "missing" / "flywheel.prom", "text\n")


@pytest.mark.parametrize("name", ["flywheel.txt", "flywheel.prom.tmp", "flywheel"])
def test_textfile_refuses_a_name_the_collector_would_ignore(database_url, tmp_path, name):
    result = CliRunner().invoke(cli, ["summary", "--database-url", database_url, "--textfile", str(tmp_path / name)])
    assert result.exit_code == 1
    assert "reads only *.prom files" in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace not installed")
def test_textfile_rename_is_made_durable_by_flushing_the_folder(tmp_path):
    path = tmp_path / "flywheel.prom"
    trace = tmp_path / "trace"
    script = ("from pathlib import Path; from flywheel_sync.outputs import textfile; "
              f"textfile.write_textfile(Path({str(path)!r}), 'x 1\\n')")
    subprocess.run(["strace", "-f", "-y", "-e", "trace=fsync,rename,renameat,renameat2", "-o", str(trace),
                    sys.executable, "-c", script], check=True)
    calls = [line.split(None, 1)[1] for line in trace.read_text().splitlines()]
    renamed = next(index for index, call in enumerate(calls) if call.startswith("rename"))
    assert any(call.startswith("fsync(") and f"<{tmp_path}>)" in call for call in calls[renamed:]), calls


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
