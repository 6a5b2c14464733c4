"""Issue #18 finding 5: input has limits, each refused naming the field and its setting,
before anything is stored."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from tdauto import AutomationSystems, InvalidInput
from tests.support.tasks import good_task, run_cli, store_fingerprint


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def system(data_dir: Path) -> AutomationSystems:
    return AutomationSystems(data_dir=data_dir)


def alias_bomb(levels: int) -> str:
    """Each level a list of nine aliases of the one before: 9**levels values in 40-odd bytes
    a level (the finding's 500-byte file grew ``task create`` to 2.2 GB)."""
    names = [f"l{i}" for i in range(levels + 1)]
    lines = [f'{names[0]}: &{names[0]} ["{"x" * 8}", "{"x" * 8}"]']
    for before, name in itertools.pairwise(names):
        lines.append(f"{name}: &{name} [{', '.join([f'*{before}'] * 9)}]")
    return "\n".join(lines) + "\n"


def refused(system: AutomationSystems, data_dir: Path, definition: dict[str, Any]) -> str:
    """Create ``definition``; return the refusal's text, checking the store did not change."""
    before = store_fingerprint(data_dir)
    with pytest.raises(InvalidInput) as caught:
        asyncio.run(system.create_task(**definition))
    assert store_fingerprint(data_dir) == before
    return str(caught.value)


@pytest.mark.parametrize("levels", [7, 9])
def test_a_yaml_alias_bomb_is_refused_in_one_line(data_dir: Path, tmp_path: Path, levels) -> None:
    # Given a task file whose aliases nest 7 (the 33 MB task) or 9 levels deep
    path = tmp_path / "bomb.yaml"
    text = alias_bomb(levels) + "name: bomb\ntype: maintenance\nschedule: daily\n"
    path.write_text(text + "schedule_config: {hour: 2}\nactions: *l1\n")
    assert len(path.read_bytes()) < 700
    # When it is created
    result = run_cli(data_dir, "task", "create", "-f", str(path))
    # Then one line names the file and the aliases, and nothing is stored
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"{path}: its aliases (*name) expand to" in result.stderr
    assert "more than 10000" in result.stderr
    assert not (data_dir / "tasks").exists() or not list((data_dir / "tasks").iterdir())


def test_a_few_aliases_are_still_fine(data_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "tasks.yaml"
    path.write_text(
        "- name: first\n  type: maintenance\n  schedule: daily\n"
        "  schedule_config: &at {hour: 2, minute: 30}\n"
        "  actions: &steps [{type: cleanup, params: {older_than: 30days}}]\n"
        "- name: second\n  type: maintenance\n  schedule: daily\n"
        "  schedule_config: *at\n  actions: *steps\n"
    )
    result = run_cli(data_dir, "task", "create", "-f", str(path), "--json")
    assert result.exit_code == 0, result.output
    created = json.loads(result.stdout)
    assert [t["schedule_config"]["minute"] for t in created] == [30, 30]


def test_a_ten_megabyte_description_is_refused(system, data_dir) -> None:
    message = refused(system, data_dir, good_task(description="d" * 10_000_000))
    assert message.startswith("description: is 10000000 characters")
    assert "TDAUTO_TASK_DESCRIPTION_MAX (4096)" in message


def test_ten_thousand_actions_are_refused(system, data_dir) -> None:
    steps = [{"type": "cleanup", "params": {"older_than": "30days"}}] * 10_000
    message = refused(system, data_dir, good_task(actions=steps))
    assert message.startswith("actions: has 10000 steps")
    assert "TDAUTO_TASK_MAX_ACTIONS (100)" in message


def test_too_many_recovery_steps_are_refused(system, data_dir) -> None:
    step = {"type": "cleanup", "params": {"older_than": "1d"}}
    action = {**step, "on_failure": [step] * 101}
    message = refused(system, data_dir, good_task(actions=[action]))
    assert message.startswith("actions.0.on_failure: has 101 steps")


def test_a_large_param_is_refused_naming_it(system, data_dir) -> None:
    params = {"older_than": "30days", "path": "p" * 100_000}
    message = refused(system, data_dir, good_task(actions=[{"type": "cleanup", "params": params}]))
    assert message.startswith("actions.0.params.path: the param is more than")
    assert "TDAUTO_PARAM_MAX_BYTES (65536)" in message


def test_a_large_definition_is_refused(system, data_dir) -> None:
    # five params each under the param limit, together over the definition's
    steps = [{"type": "cleanup", "params": {"older_than": "30days", "path": "p" * 60_000}}] * 5
    message = refused(system, data_dir, good_task(actions=steps))
    assert message.startswith("task: the task definition is more than")
    assert "TDAUTO_TASK_MAX_BYTES (262144)" in message


def test_the_limits_are_settings(data_dir) -> None:
    system = AutomationSystems(data_dir=data_dir, task_description_max=10, task_max_actions=1)
    assert "(10)" in refused(system, data_dir, good_task(description="d" * 11))
    step = {"type": "cleanup", "params": {"older_than": "30days"}}
    assert "(1)" in refused(system, data_dir, good_task(actions=[step, step]))


def test_deep_nesting_is_refused_naming_where(system, data_dir) -> None:
    nested: Any = "leaf"
    for _ in range(40):
        nested = {"k": nested}
    params = {"older_than": "30days", "extra": nested}
    message = refused(system, data_dir, good_task(actions=[{"type": "cleanup", "params": params}]))
    assert message.startswith("actions.0.params.extra.k.k")
    assert "nested more than 32 levels deep" in message


def test_an_update_is_held_to_the_same_limits(system, data_dir) -> None:
    task = asyncio.run(system.create_task(**good_task()))
    before = store_fingerprint(data_dir)
    with pytest.raises(InvalidInput, match=r"^description: is 5000 characters"):
        asyncio.run(system.update_task(task.id, description="d" * 5000))
    assert store_fingerprint(data_dir) == before


def test_a_task_file_over_its_limit_is_refused(data_dir, tmp_path) -> None:
    path = tmp_path / "big.json"
    path.write_text(json.dumps(good_task(description="d" * 2000)))
    env = {"TDAUTO_TASK_FILE_MAX_BYTES": "1000"}
    result = run_cli(data_dir, "task", "create", "-f", str(path), env=env)
    assert result.exit_code == 2, result.output
    assert f"{path}: is more than TDAUTO_TASK_FILE_MAX_BYTES (1000) bytes" in result.stderr


def test_a_bad_task_in_a_file_stores_none_of_them(data_dir, tmp_path) -> None:
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps([good_task(), good_task(name="second", description="d" * 5000)]))
    result = run_cli(data_dir, "task", "create", "-f", str(path))
    assert result.exit_code == 2, result.output
    assert "description: is 5000 characters" in result.stderr
    assert AutomationSystems(data_dir=data_dir).store.list_tasks() == []


def test_two_tasks_of_a_file_with_one_name_store_neither(data_dir, tmp_path) -> None:
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps([good_task(), good_task(description="another")]))
    result = run_cli(data_dir, "task", "create", "-f", str(path))
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        f"error: {path}: tasks[1] \"nightly-cleanup\": name: 'nightly-cleanup' is also the name "
        f'of {path}: tasks[0] "nightly-cleanup", a different task; rename one\n'
    ), result.stderr
    assert AutomationSystems(data_dir=data_dir).store.list_tasks() == []


def test_a_trigger_override_is_held_to_the_param_limit(system) -> None:
    task = asyncio.run(system.create_task(**good_task()))
    with pytest.raises(InvalidInput, match=r"^params\.cleanup\.path: the param is more than"):
        system.trigger_sync(task.id, {"cleanup": {"path": "p" * 70_000}})
    assert system.store.list_executions(task.id, None, 10) == []
