"""The one redaction policy (docs/security.md, docs/architecture.md "redaction, printing"):
every printer and every record hides secrets the same way.

A key is secret when its name, lowercased with ``-`` read as ``_``, contains ``password``,
``passwd``, ``secret``, ``token``, ``api_key``/``apikey``, ``signature``, ``session``,
``authorization``, ``cookie``, ``credential``, ``private_key`` or is ``key``, ``sig`` or
``auth``. So the HTTP headers ``Authorization``, ``Cookie``, ``Api-Key``, ``X-Api-Key``,
``X-Signature`` and ``X-Session`` and the query parameter ``access_token`` are all secret.
A key ending in ``_env`` is not: its value is the NAME of the variable that holds the secret
(``password_env: PGPASSWORD``), and names are always shown.

Values are hidden (``***``), never keys: in dicts (at any depth; a secret key's dict or list
keeps its keys and hides its leaves), in URL userinfo and query strings, and in free text
(``password=…``, ``"X-Api-Key": "…"``). Empty values are left as they are, so a user can see
that nothing was set.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

REDACTED = "***"

_WORDS = (
    r"password|passwd|secret|token|api[_-]?key|signature|session|authorization|cookie"
    r"|credential|private[_-]?key"
)
_SECRET_KEY = re.compile(rf"{_WORDS}|^(?:x_)?(?:key|sig|auth)$")
# the scheme is bounded so a long run of letters cannot make the search quadratic
_URL_USERINFO = re.compile(
    r"(?P<scheme>\b[a-z][a-z0-9+.-]{0,30}://)(?P<user>[^:/@\s]{0,256}):[^@/\s]{1,512}@", re.I
)
# `name=value` in a query string, a form body or a command line; `name: value`; a JSON or
# Python-dict pair. The name is checked by is_secret_key, so `password_env=X` keeps X.
_PAIR = re.compile(
    rf"(?P<k>(?<![\w-])(?:[\w-]{{0,40}}?(?:{_WORDS})[\w-]{{0,40}}|sig))"
    r"(?P<kq>['\"]?)(?P<sep>\s*[=:]\s*)(?P<q>['\"])?"
    r"(?P<v>(?(q)[^'\"\n]{1,4096}|(?:(?:bearer|basic|digest|token)\s+)?[^\s'\",;&#]{1,4096}))",
    re.I,
)

# every _WORDS match (and `sig`) holds one of these; `in` is far faster than the regex
_HINTS = (
    "passw", "secret", "token", "api", "sig", "session", "authoriz", "cookie", "credential",
    "private",
)  # fmt: skip


def _may_name_a_secret(text: str) -> bool:
    low = text.lower()
    return any(hint in low for hint in _HINTS)


def is_secret_key(key: str) -> bool:
    """Whether a value stored under ``key`` (a param, an output field, a header, a query
    parameter) is a secret. ``*_env`` keys (and ``TDAUTO_TASK_SECRETS``) name variables and
    are not."""
    return not _names(key) and bool(_SECRET_KEY.search(key.strip().lower().replace("-", "_")))


def _names(key: str) -> bool:
    """``password_env``, ``headers_env``, ``TDAUTO_TASK_SECRETS``: the value names environment
    variables (or patterns of their names), so hiding it would hide the fix a message gives."""
    return key.strip().lower().endswith(("_env", "task_secrets"))


def _hidden(value: Any) -> Any:
    """``value`` with every leaf hidden and every key kept."""
    if isinstance(value, dict):
        return {k: _hidden(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_hidden(v) for v in value]
    if value is None or value == "" or isinstance(value, bool):
        return value
    return REDACTED


def redact(value: Any) -> Any:
    """A copy of ``value`` with the values of secret keys and the secrets in strings hidden."""
    if isinstance(value, dict):
        return {k: _redact_entry(k, v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def _redact_entry(key: object, value: Any) -> Any:
    if not isinstance(key, str):
        return redact(value)
    if _names(key):  # names of variables, even under secret-looking keys: {"Authorization": "X"}
        return value
    return _hidden(value) if is_secret_key(key) else redact(value)


def redact_headers(headers: dict[str, str], also: set[str] | None = None) -> dict[str, str]:
    """``headers`` with secret ones (and those named in ``also``) hidden, names kept."""
    hidden = {h.lower() for h in also or ()}
    return {
        k: (REDACTED if (is_secret_key(k) or k.lower() in hidden) and v else redact_text(v))
        for k, v in headers.items()
    }


def redact_url(url: str) -> str:
    """``url`` with its password and secret query values hidden (``?access_token=***``)."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if parts.password:
        netloc = netloc.replace(f":{parts.password}@", f":{REDACTED}@", 1)
    query = parts.query
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        query = urllib.parse.urlencode(
            [(k, REDACTED if is_secret_key(k) and v else v) for k, v in pairs], safe="*"
        )
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query))


def _pair(match: re.Match[str]) -> str:
    if not is_secret_key(match.group("k")):
        return match.group(0)
    kept = match.group("k", "kq", "sep")
    return f"{''.join(kept)}{match.group('q') or ''}{REDACTED}"


def redact_text(text: str) -> str:
    """Free text (an error, a log line, a command's output) with URL passwords and the values
    of secret ``name=value`` / ``name: value`` pairs hidden."""
    text = _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:{REDACTED}@", text)
    if not _may_name_a_secret(text):  # the common case, and much cheaper than the search
        return text
    # a pair never spans lines: only lines that may name a secret are searched
    lines = text.split("\n")
    return "\n".join(_PAIR.sub(_pair, ln) if _may_name_a_secret(ln) else ln for ln in lines)
