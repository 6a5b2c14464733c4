"""How the CLI prints what records hold: secrets hidden by the one policy (``tdauto.redact``)
and text escaped for the terminal (``tdauto.printable``), for ``--json`` and for people alike.
Every module of ``tdauto.cli`` prints through these (docs/architecture.md)."""

from __future__ import annotations

from typing import Any

import click
from pydantic import ValidationError
from rich.console import Console
from rich.highlighter import JSONHighlighter
from rich.markup import escape
from rich.text import Text

from tdauto.printable import cell, json_text, printable, printable_lines
from tdauto.redact import redact, redact_text


def emit_json(value: Any, *, records: bool = True) -> None:
    """``--json`` output: redacted, and escaped where a terminal would act on a character.
    ``records=False`` is for the catalog of actions: schemas and docstrings are code, hold
    no one's secret, and their prose ("password: ``password_env`` names…") must read whole."""
    click.echo(json_text(redact(value) if records else value))


def emit_yaml(value: Any, *, records: bool = True) -> None:
    """``-o yaml``: ``yaml.safe_dump`` of the very data ``--json`` prints (redacted, times as
    text). Names in any script stay readable, unless a character a terminal acts on is there:
    then every non-ASCII character is written as a YAML escape (same data once parsed)."""
    import json

    import yaml

    data = json.loads(json_text(redact(value) if records else value, None))
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    if printable_lines(text) != text:
        text = yaml.safe_dump(data, sort_keys=False)
    click.echo(text, nl=False)


def show_json(console: Console, value: Any) -> None:
    """Pretty JSON for people (``task show``): the same text as ``--json``, highlighted."""
    console.print(JSONHighlighter()(Text(json_text(redact(value)))), soft_wrap=True)


def json_inline(value: Any) -> str:
    """``value`` redacted as one line of JSON (an action's output in a table)."""
    return json_text(redact(value), None)


def safe(value: object) -> str:
    """A record's text for an f-string printed as rich markup: escaped, ``[red]`` literal."""
    return escape(printable(redact_text(str(value))))


def log_text(text: str) -> str:
    """Log lines as printed by ``tdauto exec logs``: redacted again (a log an older tdauto
    wrote), escaped, one line per line."""
    return printable_lines(redact_text(text))


def error_line(exc: BaseException) -> str:
    """One line for an expected error. A settings error names its variable
    (``TDAUTO_BROKER_URL: unsupported broker URL …``) instead of pydantic's report."""
    if isinstance(exc, ValidationError) and exc.title == "Settings":
        parts = []
        for error in exc.errors(include_url=False, include_input=False):
            where = "_".join(str(p) for p in error["loc"]).upper()
            message = error["msg"].removeprefix("Value error, ")
            parts.append(f"TDAUTO_{where}: {message}" if where else message)
        text = "; ".join(parts)
    else:
        text = str(exc)
    return escape(printable_lines(redact_text(text)))


__all__ = [
    "cell",
    "emit_json",
    "emit_yaml",
    "error_line",
    "json_inline",
    "log_text",
    "safe",
    "show_json",
]
