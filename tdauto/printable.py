"""Text from records made safe for a terminal (issue #18 finding 9).

A task name, an error or a log line may hold ESC (a colour, a cursor move, an OSC title or
hyperlink), NUL, a newline that forges a table row, or a bidi control that shows a name
backwards. The CLI prints every such text through :func:`printable`, which shows these
characters as visible escapes (``\\x1b``, ``\\u{202e}``), so what is printed is what is
stored. Rich markup in them (``[red]``) prints literally: the CLI hands these texts to rich as
:class:`rich.text.Text` (:func:`cell`, which also hides secrets), never as markup.
"""

from __future__ import annotations

import json
import re
import unicodedata
from functools import cache
from typing import Any

from rich.text import Text

from tdauto.redact import redact_text

# control, format (bidi, zero-width), line and paragraph separators, surrogates, unassigned
UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Cn"})


# only these can be unsafe; printable ASCII (most text) is passed over by the regex engine
_CANDIDATE = re.compile(r"[^\x20-\x7e]")


@cache
def _unsafe(char: str) -> bool:
    return unicodedata.category(char) in UNSAFE_CATEGORIES


def _visible(match: re.Match[str]) -> str:
    char = match.group(0)
    if not _unsafe(char):
        return char
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{{{code:x}}}"


def printable(text: object) -> str:
    """``text`` on one line with every unsafe character shown as ``\\xNN`` or ``\\u{...}``."""
    return _CANDIDATE.sub(_visible, str(text))


def printable_lines(text: str) -> str:
    """As :func:`printable`, keeping the newlines of a multi-line text (a log)."""
    return "\n".join(printable(line) for line in text.split("\n"))


def cell(value: object, limit: int | None = None) -> Text:
    """A record's text as a table cell or line part: secrets hidden (``tdauto.redact``), cut
    to ``limit`` characters, escaped, and never read as rich markup or emoji."""
    return Text(printable(redact_text(str(value))[:limit]))


def _json_escape(match: re.Match[str]) -> str:
    char = match.group(0)
    if char == "\n" or not _unsafe(char):  # json.dumps escapes control characters in strings,
        return char  # so a raw newline is one of its own, between values
    code = ord(char)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def json_text(value: Any, indent: int | None = 2) -> str:
    """``value`` as JSON with its unsafe characters escaped (ESC as ``\\u001b``: still valid
    JSON, same data), while other non-ASCII text (names in any script) stays readable."""
    text = json.dumps(value, indent=indent, default=str, ensure_ascii=False)
    return _CANDIDATE.sub(_json_escape, text)
