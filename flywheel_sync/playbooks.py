"""Validating one Redis playbook record: the rule of metrics.md, "Playbook records".

A record is valid when it is a JSON object whose ``status`` is a string and whose ``success_count``
and ``failure_count`` are absent or null (read as 0) or non-negative integers that fit a bigint.
Everything else is kept as an invalid row with a one-line reason, so one bad record never stops the
others from counting (the old service fell back to 0 for the whole metric).

:func:`validate` is pure: bytes in, a :class:`Record` out, never an exception. It also refuses what
PostgreSQL could not store as jsonb or text (NaN, NUL characters, lone surrogates), so a record that
passes here is always writable.
"""

from __future__ import annotations

import json
import math
import re
from typing import NamedTuple

MAX_VALUE_BYTES = 1024 * 1024
MAX_DEPTH = 64
EXCERPT_CHARS = 200
BIGINT_MAX = 2**63 - 1
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


def validate(raw: bytes) -> Record:
    """The record stored in ``raw`` (a Redis string value), valid or with the reason it is not."""
    if len(raw) > MAX_VALUE_BYTES:
        return _not_an_object(raw, f"value is {len(raw):,} bytes, more than the {MAX_VALUE_BYTES:,} allowed")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _not_an_object(raw, f"not UTF-8 text (byte {exc.start})")
    try:
        parsed = _DECODER.decode(text)
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


def wrong_type(redis_type: str) -> Record:
    """The record of a key that holds another Redis type (a hash, a list, ...) instead of a string."""
    return Record(None, None, None, None, None, f"key holds a Redis {redis_type}, not a string")


def _fields(document: dict, text: str) -> Record:
    status = document.get("status")
    successes = document.get("success_count")
    failures = document.get("failure_count")
    # The common case first, in one test: a string status and plain integer counts.
    if type(status) is str and type(successes) is int and type(failures) is int \
            and 0 <= successes <= BIGINT_MAX and 0 <= failures <= BIGINT_MAX:
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
    return Record(None, None, None, None, _excerpt(readable(raw[: EXCERPT_CHARS * 4]), EXCERPT_CHARS), reason)


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    # 1e999 would parse as inf here, and overflow numeric in PostgreSQL.
    number = float(text)
    if number in (math.inf, -math.inf):
        raise ValueError(f"{_excerpt(text, 40)} is too large a number")
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
