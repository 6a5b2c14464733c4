"""Redaction of secrets in params, outputs and log lines (design section 10).

A value is secret when its key contains ``password``, ``token``, ``secret`` or ``key`` (but not
``idempotency_key``-like ids we write ourselves), or when it is the password of a URL.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "***"
_SECRET_KEY = re.compile(r"(password|passwd|token|secret|api_?key|private_?key|^key$)", re.I)
# the scheme is bounded so a long run of letters cannot make the search quadratic
_URL_PASSWORD = re.compile(
    r"(?P<scheme>\b[a-z][a-z0-9+.-]{0,30}://)(?P<user>[^:/@\s]{0,256}):[^@/\s]{1,512}@", re.I
)
_INLINE = re.compile(
    r"(?P<k>\b(?:password|passwd|token|secret|api_?key)\b\s*[=:]\s*)(?P<q>['\"]?)[^\s'\",;]+",
    re.I,
)


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def redact(value: Any) -> Any:
    """A copy of ``value`` with secret-keyed entries and URL passwords replaced."""
    if isinstance(value, dict):
        return {
            k: (REDACTED if isinstance(k, str) and is_secret_key(k) and v else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def redact_text(text: str) -> str:
    """Hide URL passwords and ``password=...``-style values in free text."""
    text = _URL_PASSWORD.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:{REDACTED}@", text)
    return _INLINE.sub(lambda m: f"{m.group('k')}{m.group('q')}{REDACTED}", text)
