"""The macro expander the Grafana tests rely on behaves as Grafana's PostgreSQL datasource."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.grafana_macros import MacroError, TimeRange, expand, format_interval, go_float

JANUARY = TimeRange(datetime(2024, 1, 1, tzinfo=timezone.utc), datetime(2024, 1, 2, 8, tzinfo=timezone(timedelta(hours=8))))
FIVE_MINUTES = timedelta(minutes=5)


def test_time_filter_is_between_rfc3339_utc_bounds():
    assert expand("where $__timeFilter(t)", JANUARY, FIVE_MINUTES) == \
        "where t BETWEEN '2024-01-01T00:00:00Z' AND '2024-01-02T00:00:00Z'"


def test_fractional_seconds_keep_only_their_significant_digits():
    time_range = TimeRange(JANUARY.start + timedelta(milliseconds=500), JANUARY.end)
    assert expand("$__timeFrom()", time_range, FIVE_MINUTES) == "'2024-01-01T00:00:00.5Z'"


def test_time_group_alias_with_the_interval_variable_buckets_by_its_seconds():
    assert expand("select $__timeGroupAlias(t, $__interval)", JANUARY, FIVE_MINUTES) == \
        'select floor(extract(epoch from t)/300)*300 AS "time"'


def test_time_group_directly_followed_by_a_comma_gets_the_alias():
    assert expand("$__timeGroup(t,'1h'), v", JANUARY, FIVE_MINUTES) == \
        'floor(extract(epoch from t)/3600)*3600 AS "time", v'


def test_interval_ms_is_replaced_before_interval():
    assert expand("$__interval_ms $__interval", JANUARY, timedelta(seconds=90)) == "90000 1m"


def test_unix_epoch_macros_use_whole_seconds():
    assert expand("$__unixEpochFilter(u) $__unixEpochFrom()", JANUARY, FIVE_MINUTES) == \
        "u >= 1704067200 AND u <= 1704153600 1704067200"


def test_unknown_macro_is_an_error():
    with pytest.raises(MacroError, match="undefined macro"):
        expand("$__nope(t)", JANUARY, FIVE_MINUTES)


@pytest.mark.parametrize("seconds, text", [(300, "300"), (0.5, "0.5"), (604800, "604800"), (2592000, "2.592e+06")])
def test_bucket_sizes_print_as_go_prints_a_float(seconds, text):
    assert go_float(seconds) == text


@pytest.mark.parametrize("interval, text", [(timedelta(days=1), "1d"), (timedelta(hours=25), "1d"),
                                            (timedelta(milliseconds=500), "500ms")])
def test_interval_prints_in_its_largest_whole_unit(interval, text):
    assert format_interval(interval) == text
