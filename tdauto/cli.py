"""The ``tdauto`` command: run the system (up, worker, beat, flower) and manage it.

Human tables by default (rich), ``--json`` for scripts. Settings come from ``TDAUTO_*``
variables, as in every other tdauto process.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from tdauto.cli_print import cell, emit_json, error_line, json_inline, log_text, safe, show_json
from tdauto.errors import TdautoError
from tdauto.processes import POOLS, follow_parent
from tdauto.redisconn import RedisUnavailable, check_settings

if TYPE_CHECKING:  # the facade is imported when a command needs it: `up` starts pools first
    from tdauto.api import AutomationSystems
    from tdauto.models import Execution, Task

console = Console(emoji=False)  # `:name:` in a record prints as typed
err_console = Console(stderr=True, emoji=False)


def _system() -> AutomationSystems:
    from tdauto.api import AutomationSystems

    system = AutomationSystems()
    check_settings(system.settings)  # Redis down: one line and exit 1, not a retry loop
    return system


def _task_json(task: Task) -> dict[str, Any]:
    return task.model_dump(mode="json")


def _exec_json(execution: Execution) -> dict[str, Any]:
    return execution.model_dump(mode="json")


def _fmt_time(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S %Z") if value else "-"


class _Seconds(click.FloatRange):
    """Seconds, refusing NaN and infinity (a NaN timeout compares false and never passes)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number of seconds", param, ctx)
        return number


class _Group(click.Group):
    """Turns tdauto's input errors into one clear line and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RedisUnavailable as exc:  # not the input's fault: exit 1, as for a failed run
            _say_error(error_line(exc))
            sys.exit(1)
        except (TdautoError, ValidationError, ValueError) as exc:
            _say_error(error_line(exc))
            sys.exit(2)


def _say_error(text: str) -> None:
    # one line whatever the width (rich wraps at 80 columns when not on a terminal), and the
    # message is text, not markup
    err_console.print(f"[red]error:[/red] {text}", soft_wrap=True)


@click.group(cls=_Group)
def main() -> None:
    """tdauto: process automation on Celery and Redis (local mode without TDAUTO_BROKER_URL)."""


# --- running the system ----------------------------------------------------------------------


@main.command()
@click.option(
    "--ready-timeout",
    type=_Seconds(min=0),
    default=120.0,
    show_default=True,
    help="Seconds to wait.",
)
@click.option(
    "--metrics-no-auth-on-localhost",
    is_flag=True,
    help="Serve /metrics without credentials (only when TDAUTO_METRICS_ADDRESS is loopback).",
)
def up(ready_timeout: float, metrics_no_auth_on_localhost: bool) -> None:
    """Run the whole system here: beat, one worker per pool and /metrics, until Ctrl-C.

    Pools that exit are restarted with backoff; a second `up` on the data dir is refused."""
    from tdauto.console import pipe_safe
    from tdauto.settings import Settings
    from tdauto.up import run_up

    out = Console(file=pipe_safe(sys.stdout), emoji=False)
    err = Console(file=pipe_safe(sys.stderr), stderr=True, emoji=False)
    settings = Settings()
    check_settings(settings)  # before any pool starts: each would print its own traceback
    try:
        code = run_up(
            settings,
            _system,
            ready_timeout_s=ready_timeout,
            metrics_no_auth_on_localhost=metrics_no_auth_on_localhost,
            say=lambda text: out.print(safe(text), soft_wrap=True),
            warn=lambda text: err.print(f"[red]{safe(text)}[/red]", soft_wrap=True),
            on_ready=lambda system: _print_tasks(asyncio.run(system.list_tasks()), out),
        )
    except TdautoError as exc:  # everything is stopped by now; say why on a stderr that may be gone
        err.print(f"[red]error:[/red] {error_line(exc)}", soft_wrap=True)
        code = 2
    sys.exit(code)


@main.command()
@click.argument("pool", type=click.Choice(POOLS))
@click.option("--loglevel", default="INFO", show_default=True)
def worker(pool: str, loglevel: str) -> None:
    """Start one worker pool (cpu, memory or storage) on this host."""
    from tdauto.app import runtime_of
    from tdauto.engine import behind
    from tdauto.resources import worker_hooks
    from tdauto.resources.pools import load_pool

    follow_parent()
    system = _system()
    spec = load_pool(pool)
    worker_hooks.install(
        system.store, system.settings, spec.name, spec.concurrency(system.settings)
    )
    if system.settings.write_behind and spec.pool == "prefork":
        behind.install(runtime_of(system.app))
    system.app.worker_main(spec.worker_argv(system.settings, loglevel))


@main.command()
@click.option("--loglevel", default="INFO", show_default=True)
def beat(loglevel: str) -> None:
    """Start the scheduler (tdauto.scheduler:StoreScheduler); SIGTERM stops it between ticks."""
    from tdauto.scheduler import run_beat

    run_beat(_system().app, loglevel)


@main.command()
@click.option("--port", type=int, default=None, help="Default: TDAUTO_FLOWER_PORT.")
@click.option("--address", default=None, help="Default: TDAUTO_FLOWER_ADDRESS.")
@click.option(
    "--no-auth-on-localhost",
    is_flag=True,
    help="Allow running without credentials, only when bound to 127.0.0.1.",
)
def flower(port: int | None, address: str | None, no_auth_on_localhost: bool) -> None:
    """Run Flower on this app: basic auth, state kept in the data dir, bounded task count."""
    from tdauto.monitoring.exposure import credentials
    from tdauto.monitoring.flower_auth import protect_metrics
    from tdauto.private import tighten

    system = _system()
    settings = system.settings
    address = address or settings.flower_address
    auth = credentials(
        "Flower",
        "TDAUTO_FLOWER",
        settings.flower_user,
        settings.flower_password,
        address,
        no_auth_on_localhost,
    )
    settings.data_path.mkdir(parents=True, exist_ok=True)
    argv = [
        "flower",
        f"--port={port or settings.flower_port}",
        f"--address={address}",
        # state (tasks, workers) survives a restart: Flower saves it to this file
        "--persistent=True",
        f"--db={settings.data_path / 'flower.db'}",
        f"--max_tasks={settings.flower_max_tasks}",
        "--state_save_interval=60000",
    ]
    if auth is not None:
        argv.append(f"--basic_auth={auth[0]}:{auth[1]}")
    protect_metrics()  # Flower serves /metrics without its credentials otherwise
    os.umask(0o077)  # this process writes only Flower's state (flower.db*): 0600
    tighten(settings.data_path)  # and one an earlier Flower left readable
    system.app.start(argv)


@main.command("metrics")
@click.option("--port", type=int, default=None, help="Default: TDAUTO_METRICS_PORT.")
@click.option("--address", default=None, help="Default: TDAUTO_METRICS_ADDRESS.")
@click.option(
    "--no-auth-on-localhost",
    is_flag=True,
    help="Allow running without credentials, only when bound to 127.0.0.1.",
)
def metrics_cmd(port: int | None, address: str | None, no_auth_on_localhost: bool) -> None:
    """Serve Prometheus /metrics for the whole system (read from the shared store)."""
    from tdauto.monitoring.exposure import HttpServer, credentials
    from tdauto.monitoring.metrics import metrics_app

    system = _system()
    s = system.settings
    address = address or s.metrics_address
    auth = credentials(
        "/metrics", "TDAUTO_METRICS", s.metrics_user, s.metrics_password, address,
        no_auth_on_localhost,
    )  # fmt: skip
    server = HttpServer(
        metrics_app(system.store, s, auth), address, s.metrics_port if port is None else port
    )
    note = "basic auth" if auth else "no auth, loopback only"
    console.print(f"serving http://{address}:{server.port}/metrics ({note}); Ctrl-C stops")
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


# --- tasks -----------------------------------------------------------------------------------


@main.group()
def task() -> None:
    """Create, list, show, pause, resume, delete and run tasks."""


@task.command("create")
@click.option("-f", "--file", "path", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--json", "as_json", is_flag=True)
def task_create(path: Path, as_json: bool) -> None:
    """Create the task(s) defined in a JSON or YAML file (all are checked before the first is
    created, so a bad one stores none)."""
    import warnings

    from tdauto.errors import InvalidInput, ScheduleWarning
    from tdauto.intake import read_task_file

    system = _system()
    items = read_task_file(path, system.settings.task_file_max_bytes)
    seen: dict[str, dict[str, Any]] = {}
    for item in items:
        checked = system.check_definition(item)
        if seen.setdefault(checked.name, checked.definition()) != checked.definition():
            raise InvalidInput("name", f"{checked.name!r} names two different tasks of {path}")
    created = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ScheduleWarning)
        for item in items:
            created.append(system.create_task_from(item))
    for warning in caught:
        if not issubclass(warning.category, ScheduleWarning):
            continue
        line = f"[yellow]warning:[/yellow] {safe(warning.message)}"
        err_console.print(line, soft_wrap=True)
    if as_json:
        emit_json([_task_json(t) for t in created])
    else:
        for t in created:
            console.print(
                f"Task created: {safe(t.id)} {safe(t.name)} next run {_fmt_time(t.next_run_at)}"
            )


def _print_tasks(tasks: list[Task], out: Console = console) -> None:
    table = Table("name", "id", "type", "schedule", "enabled", "next run (UTC)", "last run")
    for t in tasks:
        table.add_row(
            cell(t.name),
            cell(t.id[:12]),
            t.type.value,
            t.schedule.value,
            "yes" if t.enabled else "paused",
            _fmt_time(t.next_run_at),
            _fmt_time(t.last_run_at),
        )
    out.print(table if tasks else "no tasks yet: create one with `tdauto task create -f FILE`")


@task.command("list")
@click.option("--json", "as_json", is_flag=True)
def task_list(as_json: bool) -> None:
    """List tasks."""
    tasks = asyncio.run(_system().list_tasks())
    if as_json:
        emit_json([_task_json(t) for t in tasks])
    else:
        _print_tasks(tasks)


@task.command("show")
@click.argument("name")
@click.option("--count", default=5, show_default=True, help="How many next fire times.")
@click.option("--json", "as_json", is_flag=True)
def task_show(name: str, count: int, as_json: bool) -> None:
    """Show a task (by name or id) and its next fire times."""
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from tdauto.scheduler import compute_next_ts

    system = _system()
    t = asyncio.run(system.get_task(name))
    upcoming: list[datetime] = []
    after = time.time()
    while len(upcoming) < count:  # the task's own fire times: its anchor, spread and jitter
        nxt = compute_next_ts(t, after, system.settings.timezone)
        if nxt is None:
            break
        upcoming.append(datetime.fromtimestamp(nxt, UTC))
        after = nxt
    if as_json:
        emit_json({**_task_json(t), "upcoming": [u.isoformat() for u in upcoming]})
        return
    show_json(console, _task_json(t))
    zone = ZoneInfo(t.zone or system.settings.timezone)
    for u in upcoming:
        console.print(
            f"  next: {u:%Y-%m-%d %H:%M:%S} UTC  ({u.astimezone(zone):%Y-%m-%d %H:%M %Z})"
        )


def _task_change(verb: str) -> Any:
    @click.argument("name")
    @click.option("--json", "as_json", is_flag=True)
    def command(name: str, as_json: bool) -> None:
        system = _system()
        method = getattr(system, f"{verb}_task")
        result = asyncio.run(method(name))
        if as_json:
            emit_json(_task_json(result) if result is not None else {"deleted": name})
        else:
            console.print(f"{verb}d", cell(name))

    command.__doc__ = f"{verb.capitalize()} a task (by name or id)."
    return command


for _verb in ("pause", "resume", "delete"):
    task.command(_verb)(_task_change(_verb))


@task.command("run")
@click.argument("name")
@click.option("--wait", "wait_", is_flag=True, help="Wait for the run to end, with progress.")
@click.option("--timeout", type=_Seconds(min=0), default=None, help="Seconds to wait at most.")
@click.option(
    "--params", default=None, help='JSON overrides, e.g. \'{"cleanup": {"dry_run": true}}\'.'
)
@click.option("--json", "as_json", is_flag=True)
def task_run(
    name: str, wait_: bool, timeout: float | None, params: str | None, as_json: bool
) -> None:
    """Run a task now."""
    from tdauto.intake import loads_json

    system = _system()
    overrides = loads_json(params, "--params") if params else None
    execution = system.trigger_sync(name, overrides)
    if not wait_:
        if as_json:
            emit_json(_exec_json(execution))
        else:
            console.print("Execution queued:", cell(execution.id))
        return
    deadline = None if timeout is None else time.monotonic() + timeout
    with console.status("waiting…") as status:
        while True:
            execution = system.get_execution_sync(execution.id)
            steps = ", ".join(f"{r.type}:{r.status.value}" for r in execution.actions)
            status.update(f"{execution.status.value}  {safe(f'[{steps}]')}")
            if execution.status.terminal:
                break
            if deadline is not None and time.monotonic() > deadline:
                raise click.ClickException(f"still {execution.status.value} after {timeout}s")
            time.sleep(0.3)
    _show_execution(execution, as_json)
    if execution.status.value != "SUCCEEDED":
        sys.exit(1)


# --- executions ------------------------------------------------------------------------------


@main.group("exec")
def exec_() -> None:
    """List, show, follow the logs of and cancel executions."""


@exec_.command("list")
@click.option("--task", "task_name", default=None)
@click.option("--status", default=None)
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def exec_list(task_name: str | None, status: str | None, limit: int, as_json: bool) -> None:
    """List executions, newest first."""
    items = asyncio.run(_system().list_executions(task_name, status, limit))
    if as_json:
        emit_json([_exec_json(e) for e in items])
        return
    table = Table("id", "task", "status", "trigger", "created (UTC)", "duration s", "error")
    for e in items:
        d = e.duration_s
        table.add_row(
            cell(e.id),
            cell(e.task_name),
            e.status.value,
            e.trigger.value,
            _fmt_time(e.created_at),
            f"{d:.2f}" if d is not None else "-",
            cell(e.error or "", 60),
        )
    console.print(table)


def _show_execution(execution: Execution, as_json: bool) -> None:
    if as_json:
        emit_json(_exec_json(execution))
        return
    e = execution
    console.print(
        f"[bold]{safe(e.id)}[/bold]  {safe(e.task_name)}  {e.status.value}  "
        f"trigger={e.trigger.value}"
    )
    console.print(
        f"created {_fmt_time(e.created_at)}  started {_fmt_time(e.started_at)}  "
        f"finished {_fmt_time(e.finished_at)}"
    )
    if e.error:
        console.print(f"[red]error:[/red] {safe(e.error)}")
    table = Table("#", "action", "status", "attempts", "host", "queue", "output / error")
    for r in e.actions:
        detail = r.error or (json_inline(r.output) if r.output else "")
        table.add_row(
            str(r.index),
            cell(r.type),
            r.status.value,
            str(r.attempts),
            cell(r.host or "-"),
            cell(r.queue or "-"),
            cell(detail, 120),
        )
    console.print(table)


@exec_.command("show")
@click.argument("execution_id")
@click.option("--json", "as_json", is_flag=True)
def exec_show(execution_id: str, as_json: bool) -> None:
    """Show one execution and its actions."""
    _show_execution(_system().get_execution_sync(execution_id), as_json)


@exec_.command("logs")
@click.argument("execution_id")
@click.option("--follow", is_flag=True, help="Keep printing until the execution ends.")
def exec_logs(execution_id: str, follow: bool) -> None:
    """Print an execution's log."""
    system = _system()
    system.get_execution_sync(execution_id)
    printed = 0
    while True:
        text = system.store.read_log(execution_id)
        click.echo(log_text(text[printed:]), nl=False)
        printed = len(text)
        if not follow or system.get_execution_sync(execution_id).status.terminal:
            break
        time.sleep(0.5)


@exec_.command("cancel")
@click.argument("execution_id")
def exec_cancel(execution_id: str) -> None:
    """Cancel an execution."""
    e = _system().cancel_sync(execution_id)
    console.print(f"{safe(e.id)}: {e.status.value}")


@main.command()
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--watch",
    "watch_s",
    type=_Seconds(min=0.5),
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

    system = _system()
    broker = CeleryBroker(system.app, system.settings)
    try:
        if as_json:
            emit_json(snapshot(system.store, broker, decisions))
            return
        if watch_s is None:
            console.print(render(snapshot(system.store, broker, decisions)))
            return
        with Live(console=console, auto_refresh=False) as live:
            while True:
                live.update(render(snapshot(system.store, broker, decisions)), refresh=True)
                time.sleep(watch_s)
    except KeyboardInterrupt:
        pass
    finally:
        broker.close()


@main.command()
@click.option("--markdown", is_flag=True, help="Print the table of every TDAUTO_* variable.")
def config(markdown: bool) -> None:
    """Show the effective settings (secrets hidden), or the table of variables."""
    from tdauto.settings import Settings, settings_table

    if markdown:
        click.echo(settings_table())
        return
    emit_json(Settings().model_dump(mode="json"))


@main.command()
@click.option("--json", "as_json", is_flag=True)
def actions(as_json: bool) -> None:
    """List every registered action (built-in and plugins)."""
    system = _system()
    rows: list[dict[str, Any]] = [
        {
            "name": d.name,
            "process_type": d.process_type.value if d.process_type else None,
            "resource_class": d.resource_class.value,
            "description": d.description,
            "params": d.params.model_json_schema(),
        }
        for d in system._rt.registry.all()
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
    console.print(table)


# --- stats -----------------------------------------------------------------------------------


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


@main.command()
@click.option("--since", default=None, help="Window: a duration back (24h, 7d) or ISO time.")
@click.option("--json", "as_json", is_flag=True)
def stats(since: str | None, as_json: bool) -> None:
    """Task and execution statistics (from rollups: cheap at any history size)."""
    system = _system()
    data = {
        "tasks": system.get_task_stats(),
        "executions": system.get_execution_stats(_since(since)),
    }
    if as_json:
        emit_json(data)
        return
    t, e = data["tasks"], data["executions"]
    console.print(
        f"tasks: {t['total']} ({t['enabled']} enabled, {t['paused']} paused)  "
        f"by type {t['by_type']}  by schedule {t['by_schedule']}"
    )
    console.print(f"window: {e['window']['since']} to {e['window']['until']}")
    console.print(
        f"executions: {e['total']}  by status {e['by_status']}  "
        f"success rate {e['success_rate']}  durations {e['duration_seconds']}"
    )
    sched = e["scheduler"]
    console.print(
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
    console.print(table)
    for row in t["next_runs"]:
        console.print(f"  next: {row['next_run_at']}  {safe(row['name'])}")


@main.command()
@click.option("--since", default="24h", show_default=True, help="Period: 24h, 7d, or ISO time.")
@click.option("--self-contained", is_flag=True, help="Inline the chart library in the page.")
@click.option("--json", "as_json", is_flag=True)
def report(since: str, self_contained: bool, as_json: bool) -> None:
    """Write an HTML report (with charts) and its JSON to reports/ in the data dir."""
    from tdauto.monitoring.reports import write_report

    system = _system()
    made = write_report(system.store, system.settings, _since(since), None, self_contained)
    if as_json:
        emit_json(made)
    else:
        console.print(f"report: {made['html']}\ndata:   {made['json']}")


@main.command()
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def alerts(limit: int, as_json: bool) -> None:
    """Alert history, newest first (what was sent and what each notifier answered)."""
    from tdauto.monitoring.alerts import HISTORY

    records = _system().store.history(HISTORY, limit)
    if as_json:
        emit_json(records)
        return
    table = Table("at", "severity", "rule", "summary", "delivered")
    for r in records:
        table.add_row(
            *map(cell, (r["at"], r["severity"], r["rule"], r["summary"][:80])),
            cell(json_inline(r.get("delivered"))),
        )
    console.print(table if records else "no alerts sent yet")


from tdauto.cli_backup import backup  # noqa: E402 - a group kept in a module of its own

main.add_command(backup)

if __name__ == "__main__":
    main()
