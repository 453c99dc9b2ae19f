"""Reading and changing flywheel.settings. The database validates (a trigger): this module only
turns what the user typed into JSON and the trigger's refusal into a one-line error."""

from __future__ import annotations

import json
from dataclasses import dataclass

import psycopg.errors
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ..errors import InvalidSetting
from . import db


@dataclass(frozen=True)
class Setting:
    key: str
    value: object
    description: str


def list_settings(engine: Engine) -> list[Setting]:
    with db.connect(engine) as connection:
        db.require_schema(connection)
        rows = connection.execute(sa.text("select key, value, description from flywheel.settings order by key"))
        return [Setting(row.key, row.value, row.description) for row in rows]


def as_json(key: str, text: str) -> str:
    """What the user typed as JSON text for the database, which judges it: numbers and arrays as
    such, anything else as a string. So `settings set min_sample 10` stores 10, `settings set
    timezone Asia/Taipei` stores "Asia/Taipei" and `settings set stuck_after '24 hours'` stores "24 hours".

    JSON text goes through as typed, so a number keeps its digits (1e400 is a number the validator
    refuses by its bounds, not a float that overflowed to Infinity); NaN and Infinity, which
    Python's json reads but JSON has not, are refused here with the reason."""
    def not_a_number(constant: str) -> None:
        raise InvalidSetting(f"setting {key}: {constant} is not a number a setting can hold; the setting was not changed")

    try:
        json.loads(text, parse_constant=not_a_number)
    except json.JSONDecodeError:
        return json.dumps(text)
    return text


def set_setting(engine: Engine, key: str, text: str) -> Setting:
    value = as_json(key, text)
    try:
        with db.connect(engine) as connection:
            db.require_schema(connection)
            row = connection.execute(
                sa.text("update flywheel.settings set value = cast(:value as jsonb) where key = :key"
                        " returning key, value, description"),
                {"key": key, "value": value},
            ).one_or_none()
            if row is None:
                known = connection.execute(sa.text("select string_agg(key, ', ' order by key) from flywheel.settings"))
                raise InvalidSetting(f"unknown setting {key!r}; the settings are: {known.scalar_one()}")
            return Setting(row.key, row.value, row.description)
    except sa.exc.IntegrityError as exc:
        if isinstance(exc.orig, psycopg.errors.CheckViolation):
            raise InvalidSetting(f"{exc.orig.diag.message_primary}; the setting was not changed") from exc
        raise


def display(value: object) -> str:
    """A value as the user would type it back: strings bare, everything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)
