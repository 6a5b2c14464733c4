"""``tdauto resources``, ``config``, ``actions``, ``stats``, ``report`` and ``alerts``."""

from __future__ import annotations

import time
from typing import Any

import click

from tdauto.cli import base
from tdauto.cli.output import Output, key, output_options, table
from tdauto.cli_print import cell, json_inline, safe


@base.main.command()
@output_options
@click.option(
    "--watch",
    "watch_s",
    type=base.Seconds(min=0.5),
    default=None,
    help="Redraw every this many seconds until Ctrl-C (a live view).",
)
@click.option("--decisions", default=20, show_default=True, help="How many decisions to show.")
def resources(out: Output, watch_s: float | None, decisions: int) -> None:
    """Hosts and pools (live samples), reservations, routing weights, queue depths, lent
    pools, actions waiting for room and the resource manager's latest decisions."""
    from rich.live import Live

    from tdauto.resources.broker import CeleryBroker
    from tdauto.resources.view import render, snapshot

    system = base.reader()
    broker = CeleryBroker(system.app, system.settings)
    try:
        if out.data:
            out.emit(snapshot(system.store, broker, decisions))
            return
        if watch_s is None:
            out.print(render(snapshot(system.store, broker, decisions)))
            return
        with Live(console=base.console, auto_refresh=False) as live:
            while True:
                live.update(render(snapshot(system.store, broker, decisions)), refresh=True)
                time.sleep(watch_s)
    except KeyboardInterrupt:
        pass
    finally:
        broker.close()


@base.main.command()
@click.option("--markdown", is_flag=True, help="Print the table of every TDAUTO_* variable.")
@output_options
def config(markdown: bool, out: Output) -> None:
    """Show the effective settings (secrets hidden; JSON unless -o yaml) and which data dir
    is used and why, or the table of variables."""
    from tdauto import datadir
    from tdauto.settings import Settings, settings_table

    if markdown:
        click.echo(settings_table())
        return
    settings = Settings()
    # on stderr, so the JSON on stdout stays one document for scripts
    base.err_console.print(f"data dir: {safe(datadir.of(settings).describe())}", soft_wrap=True)
    Output("yaml" if out.format == "yaml" else "json").emit(settings.model_dump(mode="json"))


@base.main.command()
@output_options
def actions(out: Output) -> None:
    """List every registered action (built-in and plugins)."""
    from tdauto.actions.registry import REGISTRY, load_plugins
    from tdauto.settings import Settings

    load_plugins(Settings().plugins)  # the catalog of code: no store is opened, or made
    rows: list[dict[str, Any]] = [
        {
            "name": d.name,
            "process_type": d.process_type.value if d.process_type else None,
            "resource_class": d.resource_class.value,
            "description": d.description,
            "params": d.params.model_json_schema(),
        }
        for d in REGISTRY.all()
    ]
    if out.data:
        out.emit(rows, records=False)
        return
    listing = table(key("action"), key("process type"), key("class"), "params", "description")
    for r in rows:
        listing.add_row(
            cell(r["name"]),
            r["process_type"] or "-",
            r["resource_class"],
            out.fit(", ".join(r["params"].get("properties", {})), 100),
            out.fit(r["description"], 100),
        )
    out.print(listing)


def _since(value: str | None) -> Any:
    """``--since 2h`` (a duration back from now) or an ISO time, as an aware datetime."""
    from datetime import UTC, datetime, timedelta

    from tdauto.units import parse_duration_s

    if value is None:
        return None
    try:
        return datetime.now(UTC) - timedelta(seconds=parse_duration_s(value))
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: use a duration back from now (90m, 24h, 7d) or an ISO time",
            param_hint="--since",
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@base.main.command()
@click.option("--since", default=None, help="Window: a duration back (24h, 7d) or ISO time.")
@output_options
def stats(since: str | None, out: Output) -> None:
    """Task and execution statistics (from rollups: cheap at any history size)."""
    system = base.reader()
    data = {
        "tasks": system.get_task_stats(),
        "executions": system.get_execution_stats(_since(since)),
    }
    if out.data:
        out.emit(data)
        return
    from tdauto.cli.statsview import stats_view

    out.print(stats_view(data, out))


@base.main.command()
@click.option("--since", default="24h", show_default=True, help="Period: 24h, 7d, or ISO time.")
@click.option("--self-contained", is_flag=True, help="Inline the chart library in the page.")
@output_options
def report(since: str, self_contained: bool, out: Output) -> None:
    """Write an HTML report (with charts) and its JSON to reports/ in the data dir."""
    from tdauto.monitoring.reports import write_report

    system = base.reader()
    made = write_report(system.store, system.settings, _since(since), None, self_contained)
    if out.data:
        out.emit(made)
    else:
        base.console.print(f"report: {made['html']}\ndata:   {made['json']}")


@base.main.command()
@click.option("--limit", default=20, show_default=True)
@output_options
def alerts(limit: int, out: Output) -> None:
    """Alert history, newest first (what was sent and what each notifier answered)."""
    from tdauto.monitoring.alerts import HISTORY

    records = base.reader().store.history(HISTORY, limit)
    if out.data:
        out.emit(records)
        return
    listing = table(key("at"), key("severity"), key("rule"), "summary", "delivered")
    for r in records:
        listing.add_row(
            *map(cell, (r["at"], r["severity"], r["rule"])),
            out.fit(r["summary"], 80),
            out.fit(json_inline(r.get("delivered")), 80),
        )
    out.print(listing if records else "no alerts sent yet")
