"""The record validator of metrics.md, "Playbook records": properties over generated records."""

from __future__ import annotations

import json

from hypothesis import assume, given
from hypothesis import strategies as st

from flywheel_sync.mirror.validation import BIGINT_MAX, MAX_DEPTH, MAX_VALUE_BYTES, readable, validate, wrong_type

counts = st.integers(min_value=0, max_value=BIGINT_MAX)
# Text PostgreSQL can store (no NUL, no lone surrogate); the other kind has tests of its own.
texts = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"))
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | texts
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(texts, inner, max_size=4), max_leaves=12)


def encode(document) -> bytes:
    return json.dumps(document).encode()


def record_with(**fields) -> bytes:
    document = {"id": "PB-1", "status": "approved", "success_count": 4, "failure_count": 1, "steps": ["restart"]}
    document.update(fields)
    return encode({key: value for key, value in document.items() if value is not ...})


def assert_storable(record) -> None:
    for text in (record.status, record.document, record.raw_excerpt, record.invalid_reason):
        if text is not None:
            assert "\x00" not in text
            text.encode("utf-8")


@given(st.binary(max_size=300))
def test_any_bytes_give_a_record_postgresql_can_store(raw):
    record = validate(raw)
    assert_storable(record)
    assert record.valid == (record.invalid_reason is None)


@given(json_values)
def test_any_json_value_is_valid_exactly_when_the_contract_says_so(value):
    def count_ok(field):
        count = value.get(field)
        return count is None or (type(count) is int and 0 <= count <= BIGINT_MAX)

    expected = isinstance(value, dict) and isinstance(value.get("status"), str) \
        and count_ok("success_count") and count_ok("failure_count") \
        and (value.get("success_count") or 0) + (value.get("failure_count") or 0) <= BIGINT_MAX
    record = validate(encode(value))
    assert record.valid == expected, record.invalid_reason
    assert_storable(record)


@given(texts, counts, counts)
def test_an_object_with_a_string_status_and_counts_is_valid_with_those_values(status, successes, failures):
    assume(successes + failures <= BIGINT_MAX)  # the runs of one playbook fit a bigint
    record = validate(record_with(status=status, success_count=successes, failure_count=failures))
    assert (record.valid, record.status, record.success_count, record.failure_count) == (True, status, successes, failures)


@given(st.sampled_from([None, ...]), st.sampled_from([None, ...]))
def test_absent_or_null_counts_read_as_zero(successes, failures):
    record = validate(record_with(success_count=successes, failure_count=failures))
    assert (record.valid, record.success_count, record.failure_count) == (True, 0, 0)


@given(st.binary(min_size=1).filter(lambda raw: not raw.strip().startswith(b"{")))
def test_a_value_that_is_not_a_json_object_keeps_an_excerpt_and_a_reason(raw):
    record = validate(raw)
    assert not record.valid
    assert record.document is None
    assert record.raw_excerpt is not None


@given(json_scalars | st.lists(json_scalars))
def test_json_that_is_not_an_object_is_invalid(value):
    assert validate(encode(value)).invalid_reason.endswith("not an object")


@given(st.none() | st.booleans() | st.integers() | st.lists(texts) | st.dictionaries(texts, texts))
def test_a_status_that_is_not_a_string_is_invalid(status):
    assert "status is" in validate(record_with(status=status)).invalid_reason


def test_a_missing_status_is_invalid():
    assert validate(record_with(status=...)).invalid_reason == "status is missing"


@given(st.sampled_from(["success_count", "failure_count"]), st.integers(max_value=-1))
def test_a_negative_count_is_invalid(field, count):
    assert validate(record_with(**{field: count})).invalid_reason.startswith(f"{field} is negative")


@given(st.sampled_from(["success_count", "failure_count"]),
       st.floats(allow_nan=False, allow_infinity=False).filter(lambda number: number != int(number)))
def test_a_fractional_count_is_invalid(field, count):
    assert validate(record_with(**{field: count})).invalid_reason.endswith("not an integer")


def test_a_count_written_with_a_decimal_point_is_not_an_integer():
    assert validate(record_with(success_count=41.0)).invalid_reason == "success_count is 41.0, not an integer"


@given(st.sampled_from(["success_count", "failure_count"]), st.integers(min_value=BIGINT_MAX + 1, max_value=10**4000))
def test_a_count_beyond_bigint_is_invalid(field, count):
    assert validate(record_with(**{field: count})).invalid_reason.endswith("beyond bigint")


def test_the_largest_bigint_count_is_valid():
    assert validate(record_with(success_count=BIGINT_MAX, failure_count=0)).success_count == BIGINT_MAX


def test_a_count_of_more_digits_than_python_parses_is_invalid():
    raw = b'{"status": "approved", "success_count": ' + b"9" * 5000 + b"}"
    assert validate(raw).invalid_reason.startswith("not JSON")


@given(st.sampled_from(["success_count", "failure_count"]), st.from_regex(r"\A-?[0-9]{1,6}\Z") | texts)
def test_a_count_held_in_a_string_is_invalid(field, count):
    assert validate(record_with(**{field: count})).invalid_reason.endswith("not a number")


@given(st.sampled_from(["success_count", "failure_count"]), st.booleans())
def test_a_boolean_count_is_invalid(field, count):
    assert validate(record_with(**{field: count})).invalid_reason.endswith("not a number")


@given(st.sampled_from([b"NaN", b"Infinity", b"-Infinity"]), st.sampled_from(["success_count", "name"]))
def test_nan_and_infinity_are_not_json(constant, field):
    raw = b'{"status": "approved", "' + field.encode() + b'": ' + constant + b"}"
    assert validate(raw).invalid_reason == f"not JSON: {constant.decode()} is not a JSON number"


def test_a_number_beyond_a_double_anywhere_in_the_record_is_invalid():
    assert validate(b'{"status": "approved", "weight": 1e999}').invalid_reason == "not JSON: 1e999 is too large a number"


def test_a_record_nested_just_within_the_limit_is_valid():
    nested = {"status": "approved"}
    for _ in range(MAX_DEPTH - 1):
        nested = {"status": "approved", "inner": nested}
    assert validate(encode(nested)).valid


def test_a_record_nested_beyond_the_limit_is_invalid():
    nested = {"status": "approved"}
    for _ in range(MAX_DEPTH):
        nested = {"status": "approved", "inner": nested}
    assert validate(encode(nested)).invalid_reason == f"nested deeper than {MAX_DEPTH} levels"


def test_a_record_nested_beyond_what_the_parser_follows_is_invalid():
    assert validate(b"[" * 100_000 + b"]" * 100_000).invalid_reason.startswith("not JSON: nested deeper")


def test_a_value_larger_than_the_limit_is_invalid_without_being_parsed():
    record = validate(record_with(name="x" * MAX_VALUE_BYTES))
    assert record.invalid_reason.startswith("value is ") and record.document is None
    assert len(record.raw_excerpt) <= 200


@given(st.sampled_from(["\x00", "\ud800", "\udfff", "a\udc00b"]), st.booleans())
def test_text_postgresql_cannot_store_makes_the_record_invalid(bad, in_key):
    document = {"status": "approved", bad: 1} if in_key else {"status": "approved", "name": bad}
    assert "PostgreSQL cannot store" in validate(encode(document)).invalid_reason \
        or "unpaired surrogate" in validate(encode(document)).invalid_reason


def test_a_surrogate_pair_is_valid_text():
    assert validate(encode({"status": "approved", "name": "\U0001f600 \u6545\u969c"})).valid


@given(st.binary(max_size=40))
def test_bytes_that_are_not_utf8_are_shown_as_escapes(raw):
    text = readable(raw)
    assert "\x00" not in text
    text.encode("utf-8")


def test_a_key_of_another_type_is_invalid_and_says_which():
    assert wrong_type("hash").invalid_reason == "key holds a Redis hash, not a string"
