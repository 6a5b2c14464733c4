"""``-o json|yaml``, ``--json`` (a synonym of ``-o json``) and ``--wide``, the same on every
command that prints records, and the table helpers that honour ``--wide``. By default a
table fits the terminal with one line per row: ids and statuses whole (:func:`key`), text
cut with ``…`` (:meth:`Output.fit`); with ``--wide`` every cell is whole and the table as
wide as it needs."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Column, Table
from rich.text import Text

from tdauto.cli import base
from tdauto.cli_print import cell, emit_json, emit_yaml


@dataclass(frozen=True)
class Output:
    """How a command prints: ``table`` (for people), ``json`` or ``yaml``; ``wide``: uncut."""

    format: str = "table"
    wide: bool = False

    @property
    def data(self) -> bool:
        """True when the command prints data (json or yaml) rather than a view."""
        return self.format != "table"

    def emit(self, value: Any, *, records: bool = True) -> None:
        """``value`` as JSON or YAML, redacted and escaped (``tdauto.cli_print``)."""
        (emit_yaml if self.format == "yaml" else emit_json)(value, records=records)

    def fit(self, value: object, limit: int) -> Text:
        """A record's text as a cell on one line: cut to ``limit`` characters and to what the
        terminal leaves its column, with ``…``; whole (and wrapped by none) when wide."""
        text = cell(value)
        if self.wide:
            return text
        if len(text) > limit:
            text = Text(text.plain[: limit - 1] + "…")
        text.no_wrap, text.overflow = True, "ellipsis"
        return text

    def print(self, renderable: Any, console: Console | None = None) -> None:
        """Print a view: fitted to the terminal, or with ``--wide`` as wide as it needs."""
        console = console or base.console
        if self.wide and not isinstance(renderable, str):
            options = console.options.update(max_width=1_000_000)
            needed = Measurement.get(console, options, renderable).maximum
            if needed > console.width:
                console = Console(file=console.file, emoji=False, width=needed)
        console.print(renderable)


class FitTable(Table):
    """A table that fits its width by narrowing its text columns first (the widest first, none
    below 8 characters), then its :func:`key` columns the same way, so no column vanishes;
    rich alone narrows the wrapping columns first down to nothing. A column given a
    ``min_width`` (the id column) is never narrowed."""

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for column in self.columns:
            column.width = None
        unbounded = options.update(max_width=1_000_000)
        excess = Measurement.get(console, unbounded, self).maximum - options.max_width
        if excess > 0:
            widths = [_column_width(console, unbounded, c) for c in self.columns]
            for keys in (False, True):  # text columns give up their room first
                # a column with a min_width (whole ids, to copy) never gives any up
                chosen = [
                    i
                    for i, c in enumerate(self.columns)
                    if c.no_wrap == keys and c.min_width is None
                ]
                excess = _narrow(widths, chosen, excess, 8 if not keys else 3)
            for column, width in zip(self.columns, widths, strict=True):
                column.width = width
        yield from super().__rich_console__(console, options)


def _narrow(widths: list[int], chosen: list[int], excess: int, floor: int) -> int:
    """Take ``excess`` characters from the widest of the ``chosen`` columns, none narrower
    than ``floor``; returns what is still to take."""
    while excess > 0:
        room = [i for i in chosen if widths[i] > floor]
        if not room:
            break
        widest = max(room, key=lambda i: widths[i])
        widths[widest] -= 1
        excess -= 1
    return excess


def _column_width(console: Console, options: ConsoleOptions, column: Column) -> int:
    cells = [column.header, *column.cells]
    return max(Measurement.get(console, options, c).maximum for c in cells)


def table(*columns: str | Column, title: str | None = None) -> FitTable:
    """A list table as kubectl prints one: bold headers, no borders, two spaces between."""
    return FitTable(
        *columns, box=None, pad_edge=False, header_style="bold", title=title, title_justify="left"
    )


def key(header: str) -> Column:
    """A column of codes a person copies (ids, statuses, times): never wrapped, and narrowed
    only once the text columns have given up their room."""
    return Column(header, no_wrap=True)


def output_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Adds ``-o/--output``, ``--json`` and ``--wide``; the command gets ``out: Output``."""

    @click.option(
        "-o",
        "--output",
        "output_format",
        type=click.Choice(["json", "yaml"]),
        default=None,
        help="Print the data as json or yaml instead of a view.",
    )
    @click.option("--json", "as_json", is_flag=True, help="The same as -o json.")
    @click.option(
        "--wide", is_flag=True, help="Show columns whole (no cut, wider than the terminal)."
    )
    @functools.wraps(func)
    def command(*args: Any, output_format: str | None, as_json: bool, wide: bool, **kw: Any) -> Any:
        if as_json and output_format == "yaml":
            raise click.UsageError("--json means -o json: give --json or -o yaml, not both")
        fmt = "json" if as_json else output_format or "table"
        return func(*args, out=Output(fmt, wide), **kw)

    return command
