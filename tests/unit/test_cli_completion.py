"""Issue #19 part 10: shell completion (click's) for bash, zsh and fish, with task names and
execution ids read from the store; ``tdauto completion SHELL`` prints the script."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner

from tdauto import AutomationSystems, cli
from tdauto.models import Task
from tests.support.cli import store_execution, store_task


def complete(data: Path, line: str, shell: str = "bash") -> list[str]:
    """What ``tdauto`` offers, as the ``shell`` script asks for it, after ``line`` (the word
    being typed last; a trailing space starts a new one)."""
    words = line.split(" ")
    env = {
        "TDAUTO_DATA_DIR": str(data),
        "TDAUTO_BROKER_URL": None,
        "_TDAUTO_COMPLETE": f"{shell}_complete",
        "COMP_WORDS": line,
        "COMP_CWORD": str(len(words) - 1),
    }
    result = CliRunner().invoke(cli.main, [], env=env, prog_name="tdauto")
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    if shell == "bash":  # "type,value" per line
        return [row.split(",", 1)[1] for row in result.output.splitlines() if row]
    return [row for row in result.output.splitlines() if row]  # zsh: type, value, help


def stored(system: AutomationSystems, name: str) -> Task:
    return asyncio.run(system.get_task(name))


@pytest.fixture
def system(data: Path) -> AutomationSystems:
    system = AutomationSystems(data_dir=data)
    for name in ("nightly-db", "nightly-web", "weekly-report"):
        store_task(system, name)
    return system


def test_task_names_complete_for_every_command_that_takes_one(
    data: Path, system: AutomationSystems
) -> None:
    for command in ("show", "run", "pause", "resume", "delete"):
        assert complete(data, f"tdauto task {command} nig") == ["nightly-db", "nightly-web"]
    assert complete(data, "tdauto exec list --task we") == ["weekly-report"]


def test_a_task_id_completes_once_its_start_is_typed(data: Path, system: AutomationSystems) -> None:
    task = stored(system, "weekly-report")
    assert complete(data, f"tdauto task show {task.id[:6]}") == [task.id]


def test_execution_ids_complete_with_task_and_status_in_zsh(
    data: Path, system: AutomationSystems
) -> None:
    task = stored(system, "nightly-db")
    run = store_execution(system, task, error="disk full")
    for command in ("show", "logs", "cancel"):
        assert complete(data, f"tdauto exec {command} {run.id[:4]}") == [run.id]
    assert complete(data, f"tdauto exec show {run.id[:4]}", "zsh") == [
        "plain",
        run.id,
        "nightly-db FAILED",
    ]


def test_completion_without_a_store_offers_nothing_and_makes_none(tmp_path: Path) -> None:
    data = tmp_path / "nowhere"
    assert complete(data, "tdauto task show ") == []
    assert complete(data, "tdauto exec logs ") == []
    assert not data.exists()


def test_commands_complete_too(data: Path) -> None:
    assert complete(data, "tdauto ta") == ["task"]
    assert complete(data, "tdauto exec l") == ["list", "logs"]


@pytest.mark.parametrize(
    ("shell", "marker"),
    [
        ("bash", "_TDAUTO_COMPLETE=bash_complete"),
        ("zsh", "#compdef tdauto"),
        ("fish", "complete --no-files --command tdauto"),
    ],
)
def test_completion_prints_the_script_of_each_shell(
    tmp_path: Path, shell: str, marker: str
) -> None:
    result = CliRunner().invoke(cli.main, ["completion", shell])
    assert result.exit_code == 0, result.output
    assert marker in result.output


def test_completion_of_an_unknown_shell_names_the_choices(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.main, ["completion", "powershell"])
    assert result.exit_code == 2
    assert "'bash', 'zsh', 'fish'" in result.output
