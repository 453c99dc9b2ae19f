"""Server URLs as a user may see them, and the URL mistakes refused before any connection.

One masking rule for every URL flywheel-sync shows (PostgreSQL and Redis alike, in errors, log lines,
``--json`` and the exporter): the password of the userinfo and the value of every ``password=``
(or ``sslpassword=``) query parameter become ``***``. It works on the text, not on a parser's idea
of it, so a URL a parser would misread (an unencoded ``@`` or ``/`` in the password) is masked whole.
"""

from __future__ import annotations

import re

DATABASE_URL_ENV = "FLYWHEEL_DATABASE_URL"
REDIS_URL_ENV = "FLYWHEEL_REDIS_URL"
HIDDEN = "***"
# password=..., sslpassword=... in the query string, whatever their case.
_SECRET_PARAMETER = re.compile(r"(?i)([?&;](?:ssl)?password=)[^&;#]*")
ENCODING_HINT = "URL-encode the user name and password (@ is %40, / is %2F, : is %3A, % is %25)"


def mask(url) -> str:
    """The URL as it may be shown: the userinfo's password and every password= parameter as ***.

    Takes a string or a SQLAlchemy URL (shown with its plain backend name, postgresql://).
    """
    if not isinstance(url, str):
        url = url.set(drivername=url.get_backend_name()).render_as_string(hide_password=False)
    scheme, separator, rest = _SECRET_PARAMETER.sub(rf"\1{HIDDEN}", url).partition("://")
    if not separator:
        return scheme
    query_at = _query_start(rest)
    authority, query = rest[:query_at], rest[query_at:]
    # The userinfo ends at the last '@' before the query: an unencoded '@' or '/' in the password
    # then stays inside what is hidden.
    userinfo_end = authority.rfind("@")
    if userinfo_end >= 0:
        user, colon, _ = authority[:userinfo_end].partition(":")
        authority = user + (f":{HIDDEN}" if colon else "") + authority[userinfo_end:]
    return f"{scheme}://{authority}{query}"


def problem(url: str) -> str | None:
    """What makes ``url`` ambiguous or unusable (said without its secrets), or None when it is fine."""
    _, separator, rest = url.partition("://")
    if not separator:
        return None
    before_query = rest[:_query_start(rest)]
    if before_query.count("@") > 1:
        return f"its user name or password holds an unencoded '@': {ENCODING_HINT}"
    userinfo_end = before_query.rfind("@")
    for character in "/?#":
        if character in before_query[:max(userinfo_end, 0)]:
            return f"its user name or password holds an unencoded '{character}': {ENCODING_HINT}"
    hosts = before_query[userinfo_end + 1:].split("/", 1)[0]
    for host in hosts.split(","):
        after_address = host.rsplit("]", 1)[-1]  # an IPv6 address in brackets holds colons of its own
        port = after_address.rpartition(":")[2] if ":" in after_address else ""
        # The port itself is not shown: a URL missing its '@' would show its password here.
        if port and not port.isdigit():
            return f"its port is not a number (is a ':' of the password not URL-encoded?); {ENCODING_HINT}"
    return None


def _query_start(rest: str) -> int:
    """Where the query (or fragment) of a URL without its scheme starts; its length when it has none.

    A '?' or '#' before the last '@' belongs to an unencoded password, not to the query.
    """
    last_at = rest.rfind("@")
    positions = [position for position in (rest.find("?", last_at + 1), rest.find("#", last_at + 1)) if position >= 0]
    return min(positions) if positions else len(rest)
