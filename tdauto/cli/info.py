"""``tdauto resources``, ``config``, ``actions``, ``stats``, ``report`` and ``alerts``."""

from __future__ import annotations

import time
from typing import Any

import click
from rich.table import Table

from tdauto.cli import base
from tdauto.cli_print import cell, emit_json, json_inline, safe


@base.main.command()
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--watch",
    "watch_s",
    type=base.Seconds(min=0.5),
    default=None,
    help="Redraw every this many seconds until Ctrl-C (a live view).",
)
@click.option("--decisions", default=20, show_default=True, help="How many decisions to show.")
def resources(as_json: bool, watch_s: float | None, decisions: int) -> None:
    """Hosts and pools (live samples), reservations, routing weights, queue depths, lent
    pools, actions waiting for room and the resource manager's latest decisions."""
    from rich.live import Live

    from tdauto.resources.broker import CeleryBroker
    from tdauto.resources.view import render, snapshot

    system = base.reader()
    broker = CeleryBroker(system.app, system.settings)
    try:
        if as_json:
            emit_json(snapshot(system.store, broker, decisions))
            return
        if watch_s is None:
            base.console.print(render(snapshot(system.store, broker, decisions)))
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
def config(markdown: bool) -> None:
    """Show the effective settings (secrets hidden) and which data dir is used and why, or
    the table of variables."""
    from tdauto import datadir
    from tdauto.settings import Settings, settings_table

    if markdown:
        click.echo(settings_table())
        return
    settings = Settings()
    # on stderr, so the JSON on stdout stays one document for scripts
    base.err_console.print(f"data dir: {safe(datadir.of(settings).describe())}", soft_wrap=True)
    emit_json(settings.model_dump(mode="json"))


@base.main.command()
@click.option("--json", "as_json", is_flag=True)
def actions(as_json: bool) -> None:
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
    if as_json:
        emit_json(rows, records=False)
        return
    table = Table("action", "process type", "class", "params", "description")
    for r in rows:
        table.add_row(
            cell(r["name"]),
            r["process_type"] or "-",
            r["resource_class"],
            cell(", ".join(r["params"].get("properties", {}))),
            cell(r["description"]),
        )
    base.console.print(table)


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
@click.option("--json", "as_json", is_flag=True)
def stats(since: str | None, as_json: bool) -> None:
    """Task and execution statistics (from rollups: cheap at any history size)."""
    system = base.reader()
    data = {
        "tasks": system.get_task_stats(),
        "executions": system.get_execution_stats(_since(since)),
    }
    if as_json:
        emit_json(data)
        return
    t, e = data["tasks"], data["executions"]
    base.console.print(
        f"tasks: {t['total']} ({t['enabled']} enabled, {t['paused']} paused)  "
        f"by type {t['by_type']}  by schedule {t['by_schedule']}"
    )
    base.console.print(f"window: {e['window']['since']} to {e['window']['until']}")
    base.console.print(
        f"executions: {e['total']}  by status {e['by_status']}  "
        f"success rate {e['success_rate']}  durations {e['duration_seconds']}"
    )
    sched = e["scheduler"]
    base.console.print(
        f"scheduler: {sched['fires']} fires, lag {sched['lag_seconds']}, "
        f"{sched['missed']} missed, {sched['skipped']} skipped"
    )
    eff = e["efficiency"]
    table = Table("class", "throughput /min", "utilization", "queue wait p50 s", "p95 s")
    for klass, rate in eff["throughput_per_minute"].items():
        wait = eff["queue_wait_seconds"][klass]
        util = eff["pool_utilization"][klass]
        table.add_row(
            klass,
            f"{rate:g}",
            "-" if util is None else f"{util:.1%}",
            str(wait["p50"] if wait["p50"] is not None else "-"),
            str(wait["p95"] if wait["p95"] is not None else "-"),
        )
    base.console.print(table)
    for row in t["next_runs"]:
        base.console.print(f"  next: {row['next_run_at']}  {safe(row['name'])}")


@base.main.command()
@click.option("--since", default="24h", show_default=True, help="Period: 24h, 7d, or ISO time.")
@click.option("--self-contained", is_flag=True, help="Inline the chart library in the page.")
@click.option("--json", "as_json", is_flag=True)
def report(since: str, self_contained: bool, as_json: bool) -> None:
    """Write an HTML report (with charts) and its JSON to reports/ in the data dir."""
    from tdauto.monitoring.reports import write_report

    system = base.reader()
    made = write_report(system.store, system.settings, _since(since), None, self_contained)
    if as_json:
        emit_json(made)
    else:
        base.console.print(f"report: {made['html']}\ndata:   {made['json']}")


@base.main.command()
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def alerts(limit: int, as_json: bool) -> None:
    """Alert history, newest first (what was sent and what each notifier answered)."""
    from tdauto.monitoring.alerts import HISTORY

    records = base.reader().store.history(HISTORY, limit)
    if as_json:
        emit_json(records)
        return
    table = Table("at", "severity", "rule", "summary", "delivered")
    for r in records:
        table.add_row(
            *map(cell, (r["at"], r["severity"], r["rule"], r["summary"][:80])),
            cell(json_inline(r.get("delivered"))),
        )
    base.console.print(table if records else "no alerts sent yet")
