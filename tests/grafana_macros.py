"""Grafana's PostgreSQL macros, expanded as Grafana expands them, so tests can run a panel's SQL.

Follows pkg/tsdb/grafana-postgresql-datasource (macros.go and sqleng's interpolation) as summarised
in shared/reference/grafana-postgres.md: first plain replacements ($__interval_ms, $__interval,
$__unixEpochFrom(), $__unixEpochTo()), then every `$name(args)` with no nested parentheses; an
unknown macro is an error. The TimescaleDB option is off, as in grafana/provisioning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal

_MACRO = re.compile(r"\$([_a-zA-Z0-9]+)\(([^\)]*)\)")
_CALENDAR_INTERVAL = re.compile(r"^(\d+)(y|M|w|d)$")
_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
_CALENDAR_UNITS = {"d": 86400, "w": 7 * 86400, "M": 30 * 86400, "y": 365 * 86400}


class MacroError(ValueError):
    """A macro Grafana would refuse (unknown name, missing argument, bad interval)."""


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime


def expand(sql: str, time_range: TimeRange, interval: timedelta) -> str:
    """The SQL Grafana sends to PostgreSQL for this range and $__interval."""
    interval_ms = int(interval / timedelta(milliseconds=1))
    sql = sql.replace("$__interval_ms", str(interval_ms))
    sql = sql.replace("$__interval", format_interval(interval))
    sql = sql.replace("$__unixEpochFrom()", str(int(time_range.start.timestamp())))
    sql = sql.replace("$__unixEpochTo()", str(int(time_range.end.timestamp())))

    pieces = []
    position = 0
    for match in _MACRO.finditer(sql):
        name = match.group(1)
        args = [arg.strip() for arg in match.group(2).split(",")]
        # Grafana's quirk: a $__timeGroup(...) directly followed by a comma is given the alias.
        if name == "__timeGroup" and sql[match.end():match.end() + 1] == ",":
            name = "__timeGroupAlias"
        pieces.append(sql[position:match.start()])
        pieces.append(_evaluate(name, args, time_range))
        position = match.end()
    pieces.append(sql[position:])
    return "".join(pieces)


def _evaluate(name: str, args: list[str], time_range: TimeRange) -> str:
    if name == "__time":
        return f'{_arg(args, 0, name)} AS "time"'
    if name == "__timeEpoch":
        return f'extract(epoch from {_arg(args, 0, name)}) as "time"'
    if name == "__timeFilter":
        return f"{_arg(args, 0, name)} BETWEEN '{rfc3339(time_range.start)}' AND '{rfc3339(time_range.end)}'"
    if name == "__timeFrom":
        return f"'{rfc3339(time_range.start)}'"
    if name == "__timeTo":
        return f"'{rfc3339(time_range.end)}'"
    if name in ("__timeGroup", "__timeGroupAlias"):
        return _group(name, args, "floor(extract(epoch from {column})/{seconds})*{seconds}")
    if name == "__unixEpochFilter":
        column = _arg(args, 0, name)
        return f"{column} >= {int(time_range.start.timestamp())} AND {column} <= {int(time_range.end.timestamp())}"
    if name in ("__unixEpochGroup", "__unixEpochGroupAlias"):
        return _group(name, args, "floor(({column})/{seconds})*{seconds}")
    raise MacroError(f"undefined macro: ${name}")


def _group(name: str, args: list[str], template: str) -> str:
    if len(args) < 2:
        raise MacroError(f"macro {name} needs time column and interval and optional fill value")
    seconds = go_float(parse_interval(args[1].strip("'\"")).total_seconds())
    group = template.format(column=args[0], seconds=seconds)
    return group + ' AS "time"' if name.endswith("Alias") else group


def _arg(args: list[str], index: int, name: str) -> str:
    if len(args) <= index or args[index] == "":
        raise MacroError(f"missing time column argument for macro {name}")
    return args[index]


def rfc3339(moment: datetime) -> str:
    """Go's time.RFC3339Nano in UTC: fractional seconds only when present, without trailing zeros."""
    moment = moment.astimezone(timezone.utc)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def format_interval(interval: timedelta) -> str:
    """Go's gtime.FormatInterval: the largest whole unit, truncated (90s -> 1m)."""
    ms = int(interval / timedelta(milliseconds=1))
    for unit, size in (("y", 365 * 86400000), ("d", 86400000), ("h", 3600000), ("m", 60000), ("s", 1000)):
        if ms >= size:
            return f"{ms // size}{unit}"
    return f"{ms}ms" if ms >= 1 else "1ms"


def parse_interval(text: str) -> timedelta:
    """Go's gtime.ParseInterval: 1d, 2w, 1M, 1y, or a Go duration such as 5m or 1h30m."""
    calendar = _CALENDAR_INTERVAL.match(text)
    if calendar:
        return timedelta(seconds=int(calendar.group(1)) * _CALENDAR_UNITS[calendar.group(2)])
    parts = _GO_DURATION.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise MacroError(f"error parsing interval {text!r}")
    return timedelta(seconds=sum(float(number) * _GO_UNITS[unit] for number, unit in parts))


def go_float(value: float) -> str:
    """A float64 as Go's %v prints it: shortest digits, exponent form from 1e+06 or below 1e-04."""
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    number = Decimal(repr(abs(value))).normalize().as_tuple()
    digits = "".join(map(str, number.digits))
    exponent = len(digits) - 1 + number.exponent
    if exponent < -4 or exponent >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    if exponent < 0:
        return f"{sign}0.{'0' * (-exponent - 1)}{digits}"
    whole = digits[:exponent + 1].ljust(exponent + 1, "0")
    fraction = digits[exponent + 1:]
    return f"{sign}{whole}.{fraction}" if fraction else f"{sign}{whole}"
