"""``tdauto up``, ``worker``, ``beat``, ``flower`` and ``metrics``: running the system."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import TYPE_CHECKING

import click
from rich.console import Console

from tdauto.cli import base
from tdauto.cli.views import print_tasks
from tdauto.cli_print import error_line, safe
from tdauto.errors import TdautoError
from tdauto.processes import POOLS, follow_parent

if TYPE_CHECKING:
    from tdauto.api import AutomationSystems


@base.main.command()
@click.option(
    "--ready-timeout",
    type=base.Seconds(min=0),
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
    from tdauto.redisconn import check_settings
    from tdauto.settings import Settings
    from tdauto.up import run_up

    out = Console(file=pipe_safe(sys.stdout), emoji=False)
    err = Console(file=pipe_safe(sys.stderr), stderr=True, emoji=False)
    settings = Settings()
    check_settings(settings)  # before any pool starts: each would print its own traceback
    try:
        code = run_up(
            settings,
            base.system,
            ready_timeout_s=ready_timeout,
            metrics_no_auth_on_localhost=metrics_no_auth_on_localhost,
            say=lambda text: out.print(safe(text), soft_wrap=True),
            warn=lambda text: err.print(f"[red]{safe(text)}[/red]", soft_wrap=True),
            on_ready=lambda system: _on_ready(system, out, err),
        )
    except TdautoError as exc:  # everything is stopped by now; say why on a stderr that may be gone
        err.print(f"[red]error:[/red] {error_line(exc)}", soft_wrap=True)
        code = 2
    sys.exit(code)


def _on_ready(system: AutomationSystems, out: Console, err: Console) -> None:
    """What is scheduled, and what the workers just started cannot run."""
    import asyncio

    print_tasks(asyncio.run(system.list_tasks()), out)
    nodes = [f"{pool}@{system.settings.host}" for pool in POOLS]
    base.warn(system.worker_warnings(wait_for=nodes), err)


@base.main.command()
@click.argument("pool", type=click.Choice(POOLS))
@click.option("--loglevel", default="INFO", show_default=True)
def worker(pool: str, loglevel: str) -> None:
    """Start one worker pool (cpu, memory or storage) on this host."""
    from tdauto.app import runtime_of
    from tdauto.engine import behind
    from tdauto.resources import worker_hooks
    from tdauto.resources.pools import load_pool

    follow_parent()
    system = base.system()
    spec = load_pool(pool)
    worker_hooks.install(
        system.store, system.settings, spec.name, spec.concurrency(system.settings)
    )
    if system.settings.write_behind and spec.pool == "prefork":
        behind.install(runtime_of(system.app))
    system.app.worker_main(spec.worker_argv(system.settings, loglevel))


@base.main.command()
@click.option("--loglevel", default="INFO", show_default=True)
def beat(loglevel: str) -> None:
    """Start the scheduler (tdauto.scheduler:StoreScheduler); SIGTERM stops it between ticks."""
    from tdauto.scheduler import run_beat

    run_beat(base.system().app, loglevel)


@base.main.command()
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

    system = base.system()
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


@base.main.command("metrics")
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

    system = base.system()
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
    base.console.print(f"serving http://{address}:{server.port}/metrics ({note}); Ctrl-C stops")
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
