"""Validating one Redis playbook record: the rule of metrics.md, "Playbook records".

A record is valid when it is a JSON object whose ``status`` is a string and whose ``success_count``
and ``failure_count`` are absent or null (read as 0) or non-negative integers whose sum fits a
bigint (the runs of one playbook are success_count + failure_count).
Everything else is kept as an invalid row with a one-line reason, so one bad record never stops the
others from counting (the old service fell back to 0 for the whole metric).

:func:`validate` is pure: bytes in, a :class:`Record` out, never an exception. It also refuses what
PostgreSQL could not store as jsonb or text (NaN, NUL characters, lone surrogates), so a record that
passes here is always writable as a row: numbers beyond PostgreSQL's numeric (which jsonb stores
them as) are refused too. What one record cannot tell -- that its counts would take the mirror's
totals beyond bigint -- the sync finds when PostgreSQL refuses the write (flywheel_sync.mirror.sync_pass.write).
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from decimal import Decimal
from typing import NamedTuple

# Where the platform keeps its playbook records: the sync's default key pattern (SCAN MATCH).
DEFAULT_PATTERN = "playbook:PB-*"
MAX_VALUE_BYTES = 1024 * 1024
MAX_DEPTH = 64
EXCERPT_CHARS = 200
EXCERPT_BYTES = EXCERPT_CHARS * 4  # UTF-8 takes up to 4 bytes a character
BIGINT_MAX = 2**63 - 1
# PostgreSQL's numeric (jsonb's numbers) keeps at most 16,383 digits after the decimal point, counted
# as written (1.0e-16383 has 16,384: "value overflows numeric format"). Its 131,072 digits before
# the point are never reached: larger numbers are already refused as beyond a double.
NUMERIC_MAX_SCALE = 16_383
COUNT_FIELDS = ("success_count", "failure_count")

# Only values holding one of these escapes can decode to text PostgreSQL refuses (\u0000, or a
# surrogate that may be unpaired): the walk over the document runs for those, and deep ones, alone.
_RISKY_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")


class Record(NamedTuple):
    """One playbook record as the mirror stores it; counts and status are None when invalid."""

    status: str | None
    success_count: int | None
    failure_count: int | None
    document: str | None
    raw_excerpt: str | None
    invalid_reason: str | None

    @property
    def valid(self) -> bool:
        return self.invalid_reason is None


def readable(raw: bytes) -> str:
    """Bytes as text PostgreSQL accepts: UTF-8 as is, other bytes and NUL shown as \\xNN."""
    return raw.decode("utf-8", "backslashreplace").replace("\x00", "\\x00")


_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Control and format characters: terminal escape sequences (ESC, CSI), line breaks, bidi overrides.
_UNPRINTABLE = ("Cc", "Cf", "Zl", "Zp")


def printable(text: str) -> str:
    """Text safe to print on a terminal: control and format characters shown as escapes (\x1b, \u202e)."""
    if text.isprintable():
        return text
    return "".join(
        _NAMED_ESCAPES.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")
        if unicodedata.category(char) in _UNPRINTABLE else char
        for char in text)


def validate(raw: bytes) -> Record:
    """The record stored in ``raw`` (a Redis string value), valid or with the reason it is not."""
    if len(raw) > MAX_VALUE_BYTES:
        return oversized(len(raw), raw[:EXCERPT_BYTES])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _not_an_object(raw, f"not UTF-8 text (byte {exc.start})")
    try:
        parsed = _DECODER.decode(text)
    except _Unstorable as exc:
        return _not_an_object(raw, str(exc))
    except RecursionError:
        return _not_an_object(raw, f"not JSON: nested deeper than {MAX_DEPTH} levels")
    except ValueError as exc:
        return _not_an_object(raw, f"not JSON: {_first_line(exc)}")
    if not isinstance(parsed, dict):
        return _not_an_object(raw, f"JSON, but {_kind(parsed)}, not an object")
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH or (b"\\u" in raw and _RISKY_ESCAPE.search(raw)):
        problem = _unstorable(parsed)
        if problem:
            return _not_an_object(raw, problem)
    return _fields(parsed, text)


def oversized(size: int, head: bytes) -> Record:
    """The record of a value over MAX_VALUE_BYTES, from its size and first EXCERPT_BYTES alone (the
    sync never fetches the rest)."""
    return _not_an_object(head, f"value is {size:,} bytes, more than the {MAX_VALUE_BYTES:,} allowed")


def refused(reason: str) -> Record:
    """The record of a value PostgreSQL refused to store as it is (the sync's key-by-key retry)."""
    return Record(None, None, None, None, None, reason)


def wrong_type(redis_type: str) -> Record:
    """The record of a key that holds another Redis type (a hash, a list, ...) instead of a string."""
    return Record(None, None, None, None, None, f"key holds a Redis {redis_type}, not a string")


def _fields(document: dict, text: str) -> Record:
    status = document.get("status")
    successes = document.get("success_count")
    failures = document.get("failure_count")
    # The common case first, in one test: a string status and plain integer counts.
    if type(status) is str and type(successes) is int and type(failures) is int \
            and successes >= 0 and failures >= 0 and successes + failures <= BIGINT_MAX:
        return Record(status, successes, failures, text, None, None)
    reason = None
    if "status" not in document:
        reason = "status is missing"
    elif not isinstance(status, str):
        reason = f"status is {_kind(status)}, not a string"
    counts = []
    for field in COUNT_FIELDS:
        count, problem = _count(document, field)
        counts.append(count)
        reason = reason or problem
    if not reason and counts[0] + counts[1] > BIGINT_MAX:
        reason = "success_count + failure_count is beyond bigint (9223372036854775807)"
    if reason:
        return Record(None, None, None, text, None, reason)
    return Record(status, counts[0], counts[1], text, None, None)


def _count(document: dict, field: str) -> tuple[int | None, str | None]:
    value = document.get(field)
    if value is None:
        return 0, None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None, f"{field} is {_kind(value)}, not a number"
    if isinstance(value, float):
        return None, f"{field} is {_excerpt(repr(value), 40)}, not an integer"
    if value < 0:
        return None, f"{field} is negative ({_excerpt(str(value), 40)})"
    if value > BIGINT_MAX:
        return None, f"{field} is {len(str(value))} digits long, beyond bigint"
    return value, None


def _unstorable(document: dict) -> str | None:
    """Why PostgreSQL could not store the document as jsonb, or None; walks it without recursion."""
    pending = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if depth > MAX_DEPTH:
            return f"nested deeper than {MAX_DEPTH} levels"
        if isinstance(value, dict):
            for key, item in value.items():
                problem = _text_problem(key)
                if problem:
                    return problem
                pending.append((item, depth + 1))
        elif isinstance(value, list):
            pending.extend((item, depth + 1) for item in value)
        elif isinstance(value, str):
            problem = _text_problem(value)
            if problem:
                return problem
    return None


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "holds a \\u0000 character, which PostgreSQL cannot store"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "holds an unpaired surrogate escape (\\ud800-\\udfff), which is not valid Unicode"
    return None


def _not_an_object(raw: bytes, reason: str) -> Record:
    return Record(None, None, None, None, _excerpt(readable(raw[:EXCERPT_BYTES]), EXCERPT_CHARS), reason)


class _Unstorable(ValueError):
    """Valid JSON that PostgreSQL cannot store as jsonb (its message is the record's reason)."""


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    # 1e999 would parse as inf here, and overflow numeric in PostgreSQL.
    number = float(text)
    if number in (math.inf, -math.inf):
        raise ValueError(f"{_excerpt(text, 40)} is too large a number")
    # 1e-16384 parses as 0.0 here, but PostgreSQL keeps every digit it is given, and has room for fewer.
    # Only an exponent or a text longer than the limit can exceed it (Decimal costs 1 µs a number).
    if (len(text) > NUMERIC_MAX_SCALE or "e" in text or "E" in text) \
            and -Decimal(text).as_tuple().exponent > NUMERIC_MAX_SCALE:
        raise _Unstorable(f"holds a number PostgreSQL cannot store ({_excerpt(text, 40)}: more than "
                          f"{NUMERIC_MAX_SCALE:,} digits after the decimal point)")
    return number


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)


def _kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return f"a string ({_excerpt(json.dumps(value, ensure_ascii=False), 40)})"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _excerpt(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _first_line(exc: Exception) -> str:
    return _excerpt(str(exc).splitlines()[0], 120)
