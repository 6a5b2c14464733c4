"""The libpq options a task's PostgreSQL DSN may carry, parsed as libpq parses them.

A DSN goes to ``pg_dump``, ``pg_restore`` and ``psql`` as ``--dbname``, and libpq then
acts on every option in it, some of which read files as the worker's user: ``passfile``,
the client key and certificates (``sslkey``, ``sslcert``), ``sslrootcert``, ``sslcrl``,
``sslcrldir``, ``sslkeylogfile``, and ``service``/``servicefile`` (a service file whose
entries can set any of those). A task could thus make a worker use another app's client key
or read a file it has no business with (``passfile=/etc/shadow``). So:

- options that read a file are confined to ``TDAUTO_ALLOWED_PATHS`` (absolute paths only;
  ``sslrootcert=system`` is libpq's word for the system's CAs and stays allowed);
- ``service`` and ``servicefile`` are refused: what a service file holds cannot be checked;
- ``password`` and ``sslpassword`` are refused: secrets never go in params (``dbconn.py``);
- any other option must be a plain one libpq knows (``PLAIN``), so a new option that reads a
  file is refused until it is listed here.

Parsing follows libpq's rules (PostgreSQL docs, "Connection Strings"): ``key = value``
pairs separated by whitespace, values single-quoted with ``\\'`` and ``\\\\`` escapes, or a
``postgresql://`` / ``postgres://`` URI whose query holds the options (percent-decoded, no
``+`` for space; ``ssl=true`` meaning ``sslmode=require``). psycopg's ``conninfo_to_dict``
would do the same through libpq, but tdauto does not depend on psycopg.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

from tdauto.actions.context import confine
from tdauto.errors import PathNotAllowed

PLAIN = frozenset(
    {
        "host",
        "hostaddr",
        "port",
        "dbname",
        "user",
        "connect_timeout",
        "client_encoding",
        "options",
        "application_name",
        "fallback_application_name",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
        "sslmode",
        "sslnegotiation",
        "sslcompression",
        "sslsni",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
        "min_protocol_version",
        "max_protocol_version",
        "requirepeer",
        "require_auth",
        "channel_binding",
        "gssencmode",
        "krbsrvname",
        "gsslib",
        "gssdelegation",
        "target_session_attrs",
        "load_balance_hosts",
    }
)
FILES = frozenset(
    {"passfile", "sslkey", "sslcert", "sslrootcert", "sslcrl", "sslcrldir", "sslkeylogfile"}
)
SERVICES = frozenset({"service", "servicefile"})
SECRETS = frozenset({"password", "sslpassword"})
KNOWN = PLAIN | FILES | SERVICES | SECRETS
URI_PREFIXES = ("postgresql://", "postgres://")


class ConninfoError(ValueError):
    """A DSN that libpq would not parse, or an option tdauto does not pass on."""


def parse(dsn: str) -> dict[str, str]:
    """The options of ``dsn`` (a URI or ``key=value`` conninfo), as libpq reads them; a key
    given twice keeps its last value, as in libpq."""
    if dsn.startswith(URI_PREFIXES):
        return _parse_uri(dsn)
    return _parse_pairs(dsn)


def _parse_pairs(text: str) -> dict[str, str]:
    options: dict[str, str] = {}
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            return options
        start = i
        while i < n and text[i] != "=" and not text[i].isspace():
            i += 1
        key = text[start:i]
        if not key:
            raise ConninfoError("a key=value pair has no key (conninfo is key=value pairs)")
        while i < n and text[i].isspace():
            i += 1
        if i >= n or text[i] != "=":
            raise ConninfoError(f'missing "=" after {key!r} (conninfo is key=value pairs)')
        i += 1
        while i < n and text[i].isspace():
            i += 1
        value: list[str] = []
        if i < n and text[i] == "'":
            i += 1
            while True:
                if i >= n:
                    raise ConninfoError(f"unterminated quoted value of {key!r}")
                if text[i] == "\\":
                    if i + 1 >= n:
                        raise ConninfoError(f"unterminated quoted value of {key!r}")
                    value.append(text[i + 1])
                    i += 2
                elif text[i] == "'":
                    i += 1
                    break
                else:
                    value.append(text[i])
                    i += 1
        else:
            while i < n and not text[i].isspace():
                if text[i] == "\\":
                    i += 1  # escapes the next character; a last one is dropped
                    if i >= n:
                        break
                value.append(text[i])
                i += 1
        options[key] = "".join(value)


def _parse_uri(uri: str) -> dict[str, str]:
    """libpq's ``conninfo_uri_parse_options``, step by step."""
    text = uri.split("://", 1)[1]
    options: dict[str, str] = {}
    i = _upto(text, 0, "@/")
    if i < len(text) and text[i] == "@":  # user[:password]@
        userinfo = text[:i]
        user, colon, password = userinfo.partition(":")
        _store(options, "user", user)
        if colon:
            _store(options, "password", password)
        i += 1
    else:
        i = 0
    hosts, ports = [], []
    while True:  # host[:port] or [v6][:port], comma-separated
        if i < len(text) and text[i] == "[":
            end = text.find("]", i)
            if end < 0:
                raise ConninfoError('no matching "]" for an IPv6 host in the URI')
            if end == i + 1:
                raise ConninfoError("an IPv6 host in the URI is empty")
            hosts.append(text[i + 1 : end])
            i = end + 1
            if i < len(text) and text[i] not in ":/?,":
                raise ConninfoError(f"unexpected {text[i]!r} after an IPv6 host in the URI")
        else:
            end = _upto(text, i, ":/?,")
            hosts.append(text[i:end])
            i = end
        port = ""
        if i < len(text) and text[i] == ":":
            end = _upto(text, i + 1, "/?,")
            port, i = text[i + 1 : end], end
        ports.append(port)
        if i >= len(text) or text[i] != ",":
            break
        i += 1
    _store(options, "host", ",".join(hosts))
    _store(options, "port", ",".join(ports))
    if i < len(text) and text[i] == "/":
        end = _upto(text, i + 1, "?")
        _store(options, "dbname", text[i + 1 : end])
        i = end
    if i < len(text):  # at "?"
        _parse_query(text[i + 1 :], options)
    return options


def _parse_query(query: str, options: dict[str, str]) -> None:
    for pair in query.split("&") if query else []:
        key, eq, value = pair.partition("=")
        if not eq:
            raise ConninfoError(f"URI query parameter {pair!r} must be key=value")
        if "=" in value:
            raise ConninfoError(f"URI query parameter {key!r} has a second '='")
        key, value = _decode(key), _decode(value)
        if (key, value) == ("ssl", "true"):  # as libpq, for JDBC's spelling
            key, value = "sslmode", "require"
        options[key] = value


def _upto(text: str, start: int, stops: str) -> int:
    """The index of the first of ``stops`` in ``text`` from ``start``, or its length."""
    i = start
    while i < len(text) and text[i] not in stops:
        i += 1
    return i


def _store(options: dict[str, str], key: str, raw: str) -> None:
    """Store a percent-encoded URI part; an empty one is not stored, as in libpq."""
    if raw:
        options[key] = _decode(raw)


def _decode(raw: str) -> str:
    """Percent-decoding as libpq does it: ``%`` needs two hex digits, ``%00`` is refused, and
    ``+`` stays ``+``."""
    for at in range(len(raw)):
        if raw[at] == "%":
            token = raw[at + 1 : at + 3]
            if len(token) != 2 or not all(c in "0123456789abcdefABCDEF" for c in token):
                raise ConninfoError(f"{raw!r} has a bad percent-encoded token")
            if token == "00":
                raise ConninfoError(f"{raw!r} has %00, which libpq refuses")
    return unquote(raw, errors="surrogateescape")


def check(options: dict[str, str], allowed: list[Path] | None) -> None:
    """Refuse an option that reads a service, carries a secret or is not libpq's; confine the
    files the others read to ``allowed`` (when known). Raises ``ConninfoError`` naming the
    option."""
    for key, value in options.items():
        if key in SERVICES:
            raise ConninfoError(
                f"option {key} reads connection settings from a service file, which tdauto "
                "cannot check; give host, port, dbname and user in the dsn instead"
            )
        if key in SECRETS:
            raise ConninfoError(
                f"option {key} carries a secret; secrets never go in params (they would be "
                "stored with the task); use password_env or passfile instead"
            )
        if key in FILES:
            if key == "sslrootcert" and value == "system":
                continue
            if not Path(value).is_absolute():
                raise ConninfoError(
                    f"option {key} ({value!r}) reads a file: give its absolute path, inside "
                    "TDAUTO_ALLOWED_PATHS"
                )
            if allowed is not None:
                try:
                    confine(value, allowed, key)
                except PathNotAllowed as exc:
                    raise ConninfoError(f"option {key} reads a file: {exc.message}") from None
            continue
        if key not in PLAIN:
            raise ConninfoError(
                f"option {key!r} is not a libpq connection option tdauto passes on; use host, "
                "port, dbname, user, sslmode and the like (PostgreSQL docs: 'Parameter Key "
                "Words'), or a file option inside TDAUTO_ALLOWED_PATHS"
            )


__all__ = ["FILES", "KNOWN", "PLAIN", "SECRETS", "SERVICES", "ConninfoError", "check", "parse"]
