"""Issue #19 part 9: the commands an operator types most start without importing Celery,
Flower, plotly or the actions (a subprocess per command, its imports listed by
``-X importtime``; no timing is asserted), and ``tdauto --version`` says the version."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from tdauto import AutomationSystems
from tests.support.cli import run_cli, store_execution, store_task

# what `up`, `worker` and the actions need, and the quick commands do not
HEAVY = ("celery", "kombu", "flower", "plotly", "tdauto.actions", "tdauto.app", "tdauto.api")


def imported_by(data: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """``tdauto ARGS`` in a fresh interpreter in local mode on ``data``: the run and the
    modules it imported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TDAUTO_")}
    env["TDAUTO_DATA_DIR"] = str(data)
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "tdauto.cli", *args],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    names = {
        line.rsplit("|", 1)[1].strip()
        for line in run.stderr.splitlines()
        if line.startswith("import time:")
    }
    return run, names


@pytest.fixture
def data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    system = AutomationSystems(data_dir=data)
    store_execution(system, store_task(system, "nightly-db"), error="disk full")
    return data


# nor, to print a help text, the settings, a store, redis-py or asyncio (a third of a second)
NOT_FOR_HELP = (*HEAVY, "tdauto.settings", "tdauto.store", "redis", "asyncio")


@pytest.mark.parametrize(
    ("args", "unwanted"),
    [
        pytest.param(("--help",), NOT_FOR_HELP, id="--help"),
        pytest.param(("--version",), NOT_FOR_HELP, id="--version"),
        # local mode: no redis-py either
        pytest.param(("task", "list"), (*HEAVY, "redis"), id="task list"),
        pytest.param(("exec", "list"), (*HEAVY, "redis"), id="exec list"),
    ],
)
def test_quick_commands_do_not_import_celery_or_the_actions(
    data: Path, args: tuple[str, ...], unwanted: tuple[str, ...]
) -> None:
    run, names = imported_by(data, *args)
    assert run.returncode == 0, run.stderr[-2000:]
    loaded = sorted(n for n in names if n.split(".")[0] in unwanted or n.startswith(unwanted))
    assert not loaded, f"tdauto {' '.join(args)} imported {loaded}"


def test_task_list_and_exec_list_still_show_the_store(data: Path) -> None:
    listed = run_cli(data, "task", "list")
    assert listed.exit_code == 0, listed.output
    assert "nightly-db" in listed.output
    runs = run_cli(data, "exec", "list", "--task", "nightly-db")
    assert runs.exit_code == 0, runs.output
    assert "nightly-db" in runs.output and "FAILED" in runs.output and "disk full" in runs.output


def test_exec_list_of_a_task_that_is_not_there_is_one_line(data: Path) -> None:
    result = run_cli(data, "exec", "list", "--task", "nope")
    assert result.exit_code != 0
    assert "nope" in result.output and "Traceback" not in result.output


def test_version_prints_the_installed_version(tmp_path: Path) -> None:
    result = run_cli(tmp_path / "data", "--version")
    assert result.exit_code == 0, result.output
    assert result.output == f"tdauto {version('tdauto')}\n"
