"""``tdauto task update NAME [--set KEY=VALUE ...] [-f FILE]`` (issue #19, part 4): dotted
keys with YAML values, a one-task file, unknown keys refused by name before anything is
stored, and the errors that send a person to it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click
import pytest

from tdauto import AutomationSystems
from tests.support.cli import definition, run_cli, store_task


@pytest.fixture
def data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    store_task(AutomationSystems(broker_url=None, data_dir=data), "nightly")
    return data


def _task(data: Path, name: str = "nightly") -> dict[str, Any]:
    result = run_cli(data, "task", "show", name, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_set_takes_dotted_keys_and_yaml_values(data: Path) -> None:
    result = run_cli(
        data,
        "task",
        "update",
        "nightly",
        "--set",
        "schedule_config.hour=3",
        "--set",
        "enabled=false",
        "--set",
        "actions.0.params.older_than=7d",
        "--set",
        "actions.0.params.dry_run=true",
        "--set",
        "retry.max=4",
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith("updated (schedule_config, actions, enabled, retry): nightly ")
    task = _task(data)
    assert task["schedule_config"]["hour"] == 3 and task["enabled"] is False
    assert task["actions"][0]["params"] == {"older_than": "7d", "dry_run": True}
    assert task["retry"]["max"] == 4


def test_the_same_values_again_are_unchanged(data: Path) -> None:
    result = run_cli(data, "task", "update", "nightly", "--set", "schedule_config.hour=2")
    assert result.exit_code == 0 and result.output.startswith("unchanged: nightly ")


def test_a_file_gives_the_fields_and_set_applies_after_it(data: Path, tmp_path: Path) -> None:
    path = tmp_path / "nightly.yaml"
    path.write_text("schedule_config: {hour: 5, minute: 30}\ndescription: weekly now\n")
    result = run_cli(data, "task", "update", "nightly", "-f", str(path), "--set", "priority=7")
    assert result.exit_code == 0, result.output
    task = _task(data)
    assert task["schedule_config"]["hour"] == 5 and task["schedule_config"]["minute"] == 30
    assert task["description"] == "weekly now" and task["priority"] == 7


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            "schedule_config.hoour=3",
            "--set schedule_config.hoour: unknown key 'hoour'; did you mean 'hour'?",
        ),
        ("enabeld=false", "--set enabeld: unknown key 'enabeld'; did you mean 'enabled'?"),
        ("actions.3.params.x=1", "--set actions.3: there are 1 (numbered from 0); use one of them"),
        (
            "actions.0.params.oldr_than=7d",
            "actions.0.params.oldr_than: Extra inputs are not permitted",
        ),
        ("schedule_config.hour", "--set: 'schedule_config.hour' is not KEY=VALUE"),
        ("schedule_config.hour=[1", "--set schedule_config.hour:1:3: not valid YAML"),
        ("id=x", "id: is managed by tdauto and cannot be changed"),
    ],
)
def test_bad_settings_are_one_line_naming_the_key_and_store_nothing(
    data: Path, setting: str, message: str
) -> None:
    before = _task(data)
    result = run_cli(data, "task", "update", "nightly", "--set", "priority=9", "--set", setting)
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {message}"), result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert _task(data) == before


def test_a_file_of_several_tasks_is_refused(data: Path, tmp_path: Path) -> None:
    path = tmp_path / "two.json"
    path.write_text(json.dumps([definition("a"), definition("b")]))
    result = run_cli(data, "task", "update", "nightly", "-f", str(path))
    assert result.exit_code == 2
    assert f"error: {path}: holds 2 tasks; give task update a file of one task" in result.output


def test_nothing_to_change_says_how(data: Path) -> None:
    result = run_cli(data, "task", "update", "nightly")
    assert result.exit_code == 2
    assert "nothing to change; give --set KEY=VALUE or -f FILE" in result.output


def test_a_taken_name_points_at_task_update(data: Path, tmp_path: Path) -> None:
    # a file updates a task of its name (apply); renaming another task onto it is refused
    other = tmp_path / "other.json"
    other.write_text(json.dumps(definition("weekly")))
    assert run_cli(data, "task", "create", "-f", str(other)).exit_code == 0
    result = run_cli(data, "task", "update", "weekly", "--set", "name=nightly")
    assert result.exit_code == 2
    assert "change it with `tdauto task update nightly --set KEY=VALUE` (or -f FILE)" in (
        result.output
    )
    assert "update_task(" not in result.output
    # and the command it names does what it says
    fixed = run_cli(data, "task", "update", "nightly", "--set", "description=another one")
    assert fixed.exit_code == 0 and _task(data)["description"] == "another one"


def test_ups_metrics_hint_names_an_option_up_has(tmp_path: Path) -> None:
    from tdauto.cli import main
    from tdauto.settings import Settings
    from tdauto.up import _metrics_server

    settings = Settings(data_dir=tmp_path / "data", metrics_port=9808, metrics_user=None)
    said: list[str] = []
    assert _metrics_server(SimpleNamespace(settings=settings), None, False, said.append) is None
    named = re.findall(r"--[a-z-]+", said[0])
    up = main.get_command(click.Context(main), "up")  # commands load when asked for
    assert up is not None
    up_options = {opt for param in up.params for opt in param.opts}
    assert named and set(named) <= up_options, said
