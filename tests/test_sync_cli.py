"""The sync command as a user sees it: exit codes, the summary line, --json, --invalid, --health."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from flywheel_sync.cli import cli
from tests.platform import playbook_value


@pytest.fixture
def invoke(worker_url, redis_server_url, playbook_pattern):
    def run(*arguments: str, redis_url: str | None = redis_server_url):
        environment = {"FLYWHEEL_DATABASE_URL": worker_url, "FLYWHEEL_REDIS_URL": redis_url}
        return CliRunner().invoke(cli, ["sync", "--pattern", playbook_pattern, *arguments], env=environment)

    return run


def test_sync_prints_one_line_and_exits_zero_even_with_invalid_records(invoke, redis_client, redis_prefix):
    redis_client.set(f"{redis_prefix}playbook:PB-1", playbook_value())
    redis_client.set(f"{redis_prefix}playbook:PB-2", b"{broken")
    result = invoke()
    assert result.exit_code == 0, result.output
    assert result.output.startswith("sync 1 complete: 2 scanned, 2 inserted, 0 updated, 0 unchanged, 0 deleted, 1 invalid")


def test_sync_json_gives_the_counts(invoke, redis_client, redis_prefix):
    redis_client.set(f"{redis_prefix}playbook:PB-1", playbook_value())
    report = json.loads(invoke("--json").output)
    assert {key: report[key] for key in ("complete", "scanned", "inserted", "invalid")} == \
        {"complete": True, "scanned": 1, "inserted": 1, "invalid": 0}


def test_sync_json_gives_the_seconds_in_milliseconds(invoke, redis_client, redis_prefix):
    redis_client.set(f"{redis_prefix}playbook:PB-1", playbook_value())
    seconds = json.loads(invoke("--json").output)["seconds"]
    assert seconds == round(seconds, 3)


def test_sync_invalid_lists_each_invalid_record_with_its_reason(invoke, redis_client, redis_prefix):
    redis_client.set(f"{redis_prefix}playbook:PB-7", playbook_value(success_count=-1))
    invoke()
    result = invoke("--invalid")
    assert "PB-7" in result.output and "success_count is negative (-1)" in result.output
    assert result.output.rstrip().endswith("1 invalid record(s); they count in no metric until fixed in Redis")


def test_an_unreachable_redis_exits_one_with_a_one_line_message(invoke):
    result = invoke(redis_url="redis://user:hunter2@127.0.0.1:1/0")
    assert result.exit_code == 1
    assert result.output.startswith("Error: cannot reach Redis at redis://user:***@127.0.0.1:1/0")
    assert "hunter2" not in result.output and "Traceback" not in result.output


def test_a_missing_redis_url_says_where_to_set_it(invoke):
    result = invoke(redis_url="")
    assert (result.exit_code, result.output.strip()) == (
        1, "Error: no Redis given: set FLYWHEEL_REDIS_URL or pass --redis-url (redis://host:6379/0)")


def test_health_fails_before_any_pass_and_passes_after_one(invoke):
    assert invoke("--health", "60").exit_code == 1
    invoke()
    result = invoke("--health", "60")
    assert result.exit_code == 0 and result.output.startswith("ok: last complete pass, sync 1")


def test_sync_invalid_shows_terminal_escapes_in_key_names_escaped(invoke, redis_client, redis_prefix):
    redis_client.set(f"{redis_prefix}playbook:PB-\x1b[2J\x1b]0;pwned\x07\u202e", b"not json")
    invoke()
    result = invoke("--invalid")
    assert not any(char in result.output for char in "\x1b\x07\u202e")
    assert "PB-\\x1b[2J\\x1b]0;pwned\\x07\\u202e" in result.output
