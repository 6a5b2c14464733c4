"""Ids a person can type (issue #19, part 3): every command that takes an id takes the whole
id, a unique prefix of 4 or more characters, or, for a task, its name; an ambiguous prefix
lists what it matches (exit 2); tables show whole, unique ids."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tdauto import AutomationSystems
from tdauto.models import ActionRun, Execution, ExecutionStatus
from tests.support.cli import run_cli, store_task

A1 = "abcd1111" + "0" * 24
A2 = "abcd2222" + "0" * 24
B1 = "bbbb3333" + "0" * 24


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """Two tasks whose ids share four characters (``abcd``) and one that shares none."""
    data = tmp_path / "data"
    system = AutomationSystems(broker_url=None, data_dir=data)
    store_task(system, "alpha", id=A1)
    store_task(system, "beta", id=A2)
    store_task(system, "gamma", id=B1)
    for execution_id, task_id, name in ((A1, A1, "alpha"), (A2, A2, "beta"), (B1, B1, "gamma")):
        system.store.create_execution(
            Execution(
                id=execution_id,
                task_id=task_id,
                task_name=name,
                status=ExecutionStatus.QUEUED,
                actions=[ActionRun(index=0, type="cleanup")],
            )
        )
        system.store.append_log(execution_id, f"log of {name}\n")
    return data


TASK_COMMANDS = [["show"], ["run"], ["pause"], ["resume"], ["delete"]]
EXEC_COMMANDS = [["show"], ["logs"], ["cancel"]]


@pytest.mark.parametrize("command", TASK_COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize("ref", [A2, "abcd2", "beta"], ids=["full-id", "prefix", "name"])
def test_task_commands_take_the_id_a_unique_prefix_or_the_name(
    data: Path, command: list[str], ref: str
) -> None:
    result = run_cli(data, "task", *command, ref, "--json")
    assert result.exit_code == 0, result.output
    assert A2 in result.output or '"deleted"' in result.output
    if command == ["delete"]:
        listed = run_cli(data, "task", "list", "--json").output
        assert A2 not in listed and A1 in listed


@pytest.mark.parametrize("command", TASK_COMMANDS, ids=lambda c: c[0])
def test_an_ambiguous_task_prefix_lists_the_matches_and_changes_nothing(
    data: Path, command: list[str]
) -> None:
    result = run_cli(data, "task", *command, "abcd")
    assert result.exit_code == 2
    line = result.output.strip()
    assert "\n" not in line and "Traceback" not in line
    assert "matches 2 task ids" in line
    assert f"{A1} 'alpha'" in line and f"{A2} 'beta'" in line and B1 not in line
    listed = run_cli(data, "task", "list", "--json").output
    assert A1 in listed and A2 in listed and '"enabled": false' not in listed
    assert run_cli(data, "exec", "list", "--json").output.count('"id"') == 3  # none ran


@pytest.mark.parametrize("command", TASK_COMMANDS, ids=lambda c: c[0])
def test_a_task_prefix_shorter_than_four_is_not_looked_up(data: Path, command: list[str]) -> None:
    result = run_cli(data, "task", *command, "bbb")
    assert result.exit_code == 3  # not found (README: exit codes)
    assert "task 'bbb' not found (an id prefix needs at least 4 characters)" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", EXEC_COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize("ref", [A1, "abcd1"], ids=["full-id", "prefix"])
def test_exec_commands_take_the_id_or_a_unique_prefix(
    data: Path, command: list[str], ref: str
) -> None:
    result = run_cli(data, "exec", *command, ref)
    assert result.exit_code == 0, result.output
    assert ("log of alpha" if command == ["logs"] else A1) in result.output
    if command == ["cancel"]:
        assert f"{A1}: CANCELLED" in result.output


@pytest.mark.parametrize("command", EXEC_COMMANDS, ids=lambda c: c[0])
def test_an_ambiguous_or_short_exec_prefix_is_refused_in_one_line(
    data: Path, command: list[str]
) -> None:
    ambiguous = run_cli(data, "exec", *command, "abcd")
    assert ambiguous.exit_code == 2
    assert f"matches 2 execution ids: {A1}, {A2}; give more of the id" in ambiguous.output
    short = run_cli(data, "exec", *command, "bbb")
    assert short.exit_code == 3  # not found; an ambiguous one is bad input (2)
    assert "(an id prefix needs at least 4 characters)" in short.output
    for result in (ambiguous, short):
        assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert "CANCELLED" not in run_cli(data, "exec", "list", "--json").output


def test_a_name_wins_over_an_id_prefix(data: Path) -> None:
    system = AutomationSystems(broker_url=None, data_dir=data)
    store_task(system, "bbbb")  # its name is the start of gamma's id
    shown = run_cli(data, "task", "show", "bbbb", "--json")
    assert '"name": "bbbb"' in shown.output and B1 not in shown.output


def test_the_tables_show_whole_unique_ids_that_the_commands_take(data: Path) -> None:
    listed = run_cli(data, "task", "list", COLUMNS="80").output
    shown = re.findall(r"^(?:alpha|beta|gamma) +(\S+) ", listed, re.M)
    assert shown == ["abcd1111", "abcd2222", "bbbb3333"], listed
    for prefix in shown:
        assert run_cli(data, "task", "show", prefix).exit_code == 0
    execs = run_cli(data, "exec", "list", COLUMNS="80").output
    assert {A1, A2, B1} <= set(re.findall(r"\b([0-9a-f]{32})\b", execs)), execs
