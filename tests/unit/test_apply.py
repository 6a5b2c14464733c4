"""``tdauto apply`` and ``export`` as an operator uses them (issue #19 part 1): task files kept
in git applied as a whole, a plan of one line per task, nothing stored while one task is bad."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tdauto import AutomationSystems
from tests.support.cli import definition, run_cli, store_task


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def write(folder: Path, name: str, tasks: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    text = json.dumps(tasks) if name.endswith(".json") else yaml.safe_dump(tasks, sort_keys=False)
    path.write_text(text)
    return path


def names(data_dir: Path) -> list[str]:
    return sorted(t.name for t in AutomationSystems(data_dir=data_dir).store.list_tasks())


def test_one_bad_task_of_three_stores_none_and_names_file_task_and_field(
    data_dir: Path, tmp_path: Path
) -> None:
    bad = definition("nightly-db", actions=[{"type": "cleanup", "params": {"older_than": "abc"}}])
    path = write(tmp_path / "tasks", "t.yaml", [definition("a"), bad, definition("c")])
    result = run_cli(data_dir, "apply", "-f", str(path))
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        f'error: {path}: tasks[1] "nightly-db": actions[0].params.older_than:'
    )
    assert "Traceback" not in result.output and "pydantic" not in result.output
    assert names(data_dir) == []


def test_every_problem_is_a_line_and_a_misspelled_key_gets_a_suggestion(
    data_dir: Path, tmp_path: Path
) -> None:
    first = definition("a")
    first["schedul_config"] = first.pop("schedule_config")
    second = definition("b", resources={"cpux": 5})
    second["actions"][0]["params"]["dry_rn"] = True
    path = write(tmp_path, "t.yaml", [first, second])
    result = run_cli(data_dir, "apply", "-f", str(path))
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        f'error: {path}: tasks[0] "a": schedul_config: is not a key tdauto knows here; '
        "did you mean 'schedule_config'?",
        f'error: {path}: tasks[1] "b": actions[0].params.dry_rn: is not a key tdauto knows '
        "here; did you mean 'dry_run'?",
        f'error: {path}: tasks[1] "b": resources.cpux: is not a key tdauto knows here; '
        "did you mean 'cpu'?",
    ]


def test_the_plan_says_created_unchanged_updated_with_fields(
    data_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "tasks"
    write(folder, "a.yaml", [definition("a"), definition("b")])
    write(folder, "c.json", [definition("c")])
    assert run_cli(data_dir, "apply", "-f", str(folder)).stdout == (
        "a: created\nb: created\nc: created\n"
    )
    assert run_cli(data_dir, "apply", "-f", str(folder)).stdout == (
        "a: unchanged\nb: unchanged\nc: unchanged\n"
    )
    changed = definition("b", schedule_config={"hour": 3, "minute": 0}, priority=7)
    write(folder, "a.yaml", [definition("a"), changed])
    result = run_cli(data_dir, "apply", "-f", str(folder))
    assert result.exit_code == 0, result.output
    assert result.stdout == "a: unchanged\nb: updated (schedule_config, priority)\nc: unchanged\n"
    stored = AutomationSystems(data_dir=data_dir).store.get_task_by_name("b")
    assert stored.schedule_config.hour == 3 and stored.priority == 7


def test_dry_run_stores_nothing_and_shows_a_diff(data_dir: Path, tmp_path: Path) -> None:
    path = write(tmp_path, "t.yaml", [definition("a")])
    dry = run_cli(data_dir, "apply", "-f", str(path), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert dry.stdout.startswith("a: created (dry run)\n--- a (stored)\n+++ a (files)\n")
    assert "+name: a\n" in dry.stdout
    assert names(data_dir) == []
    run_cli(data_dir, "apply", "-f", str(path))
    write(tmp_path, "t.yaml", [definition("a", schedule_config={"hour": 4, "minute": 0})])
    dry = run_cli(data_dir, "apply", "-f", str(path), "--dry-run")
    assert dry.stdout.splitlines()[0] == "a: updated (schedule_config) (dry run)"
    assert "-  hour: 2\n" in dry.stdout and "+  hour: 4\n" in dry.stdout
    stored = AutomationSystems(data_dir=data_dir).store.get_task_by_name("a")
    assert stored.schedule_config.hour == 2


def test_prune_deletes_only_the_tasks_apply_made(data_dir: Path, tmp_path: Path) -> None:
    system = AutomationSystems(data_dir=data_dir)
    store_task(system, "by-hand")  # made with the API: apply does not own it
    path = write(tmp_path, "t.yaml", [definition("a"), definition("b")])
    run_cli(data_dir, "apply", "-f", str(path))
    write(tmp_path, "t.yaml", [definition("a")])
    result = run_cli(data_dir, "apply", "-f", str(path), "--prune")
    assert result.exit_code == 0, result.output
    assert result.stdout == "a: unchanged\nb: pruned\n"
    assert names(data_dir) == ["a", "by-hand"]
    result = run_cli(data_dir, "apply", "-f", str(path), "--prune-all")
    assert result.stdout == "a: unchanged\nby-hand: pruned\n"
    assert names(data_dir) == ["a"]


def test_without_prune_nothing_is_deleted_and_task_create_never_prunes(
    data_dir: Path, tmp_path: Path
) -> None:
    path = write(tmp_path, "t.yaml", [definition("a"), definition("b")])
    run_cli(data_dir, "apply", "-f", str(path))
    write(tmp_path, "t.yaml", [definition("a")])
    assert run_cli(data_dir, "apply", "-f", str(path)).stdout == "a: unchanged\n"
    assert run_cli(data_dir, "task", "create", "-f", str(path)).stdout == "a: unchanged\n"
    assert names(data_dir) == ["a", "b"]


def test_partial_applies_the_valid_tasks_and_still_fails(data_dir: Path, tmp_path: Path) -> None:
    bad = definition("bad", schedule_config={"hour": 25})
    path = write(tmp_path, "t.yaml", [definition("a"), bad])
    result = run_cli(data_dir, "apply", "-f", str(path), "--partial")
    assert result.exit_code == 2, result.output
    assert result.stdout == "a: created\n"
    assert f'error: {path}: tasks[1] "bad": schedule_config.hour:' in result.stderr
    assert names(data_dir) == ["a"]


def test_export_then_apply_is_unchanged(data_dir: Path, tmp_path: Path) -> None:
    system = AutomationSystems(data_dir=data_dir)
    store_task(system, "plain")
    store_task(
        system,
        "busy",
        schedule="interval",
        schedule_config={"every": "5m", "jitter": 3},
        priority=9,
        overlap="queue",
        retry={"max": 3, "backoff": 2},
        description="nightly",
        on_failure=[{"type": "cleanup", "params": {"older_than": "1d"}}],
    )
    store_task(system, "after", run_after={"task": "plain", "on": "success"})
    path = write(tmp_path, "t.yaml", [definition("filed", labels={"team": "ops"})])
    run_cli(data_dir, "apply", "-f", str(path))
    exported = run_cli(data_dir, "export")
    assert exported.exit_code == 0, exported.output
    out = tmp_path / "export.yaml"
    out.write_text(exported.stdout)
    result = run_cli(data_dir, "apply", "-f", str(out))
    assert result.exit_code == 0, result.output
    # an upstream is written before the task that runs after it
    assert result.stdout == (
        "busy: unchanged\nfiled: unchanged\nplain: unchanged\nafter: unchanged\n"
    ), result.stdout


def test_a_yaml_error_names_file_line_and_column(data_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("name: a\ntype: maintenance\nschedule: [daily\n")
    result = run_cli(data_dir, "apply", "-f", str(path))
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {path}:4:1: not valid YAML: "), result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output


def test_a_json_error_names_file_line_and_column(data_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text('[\n  {"name": "a",\n   "type": }\n]\n')
    result = run_cli(data_dir, "task", "create", "-f", str(path))
    assert result.exit_code == 2, result.output
    assert result.stderr == f"error: {path}:3:12: not valid JSON: Expecting value\n"


def test_debug_shows_the_traceback_and_the_line(data_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("name: [a\n")
    plain = run_cli(data_dir, "apply", "-f", str(path))
    assert "Traceback" not in plain.output
    for result in (
        run_cli(data_dir, "--debug", "apply", "-f", str(path)),
        run_cli(data_dir, "apply", "-f", str(path), TDAUTO_DEBUG="1"),
    ):
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith("Traceback (most recent call last):"), result.stderr
        assert result.stderr.splitlines()[-1].startswith(f"error: {path}:2:1: not valid YAML")


def test_exit_codes(data_dir: Path, tmp_path: Path) -> None:
    path = write(tmp_path, "t.yaml", [definition("a")])
    assert run_cli(data_dir, "apply", "-f", str(path)).exit_code == 0
    missing = run_cli(data_dir, "task", "show", "nope")
    assert (missing.exit_code, missing.stderr) == (3, "error: task 'nope' not found\n")
    assert run_cli(data_dir, "apply", "-f", str(tmp_path / "none.yaml")).exit_code == 2
    assert run_cli(data_dir, "apply", "--no-such-option").exit_code == 2
    # Redis down exits 4: tests/unit/test_redis_config.py


def test_an_override_for_a_misspelled_action_is_refused_with_a_suggestion(
    data_dir: Path, tmp_path: Path
) -> None:
    run_cli(data_dir, "apply", "-f", str(write(tmp_path, "t.yaml", [definition("a")])))
    result = run_cli(data_dir, "task", "run", "a", "--params", '{"cleanp": {"dry_run": true}}')
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: params.cleanp: the task has no action 'cleanp'")
    assert result.stderr.endswith("did you mean 'cleanup'?\n"), result.stderr
    result = run_cli(data_dir, "task", "run", "a", "--params", '{"cleanup": {"dry_rn": true}}')
    assert result.exit_code == 2, result.output
    assert "dry_rn" in result.stderr and "Traceback" not in result.output


def test_apply_json_prints_the_plan(data_dir: Path, tmp_path: Path) -> None:
    path = write(tmp_path, "t.yaml", [definition("a")])
    result = run_cli(data_dir, "apply", "-f", str(path), "--json")
    plan = json.loads(result.stdout)
    stored = AutomationSystems(data_dir=data_dir).store.get_task_by_name("a")
    assert plan["steps"] == [
        {
            "name": "a",
            "result": "created",
            "fields": [],
            "id": stored.id,
            "diff": plan["steps"][0]["diff"],
        }
    ]
    assert plan["errors"] == [] and plan["dry_run"] is False


def test_a_task_made_by_hand_becomes_applys_once_apply_changes_it(
    data_dir: Path, tmp_path: Path
) -> None:
    store_task(AutomationSystems(data_dir=data_dir), "by-hand")
    path = write(tmp_path, "t.yaml", [definition("by-hand", priority=8), definition("a")])
    assert run_cli(data_dir, "apply", "-f", str(path)).stdout == (
        "by-hand: updated (priority)\na: created\n"
    )
    write(tmp_path, "t.yaml", [definition("a")])
    assert run_cli(data_dir, "apply", "-f", str(path), "--prune").stdout == (
        "a: unchanged\nby-hand: pruned\n"
    )


def test_the_installed_command_prints_one_line_and_no_traceback(
    data_dir: Path, tmp_path: Path
) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("- name: a\n  type: maintenance\n  schedule: : daily\n")
    env = {**os.environ, "TDAUTO_DATA_DIR": str(data_dir), "COLUMNS": "1000"}
    env.pop("TDAUTO_BROKER_URL", None)
    command = [sys.executable, "-m", "tdauto.cli", "apply", "-f", str(path)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr == (
        f"error: {path}:3:13: not valid YAML: mapping values are not allowed here\n"
    ), done.stderr


def test_a_folder_leaves_out_hidden_folders_and_the_store(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write(repo / "tasks", "a.yaml", [definition("a")])
    (repo / ".git").mkdir()
    (repo / ".git" / "config.yaml").write_text("not: a task\n")
    data = repo / "data"
    write(repo, "b.yml", [definition("b")])
    first = run_cli(data, "apply", "-f", str(repo))  # the store is made inside the folder
    assert first.exit_code == 0, first.output
    again = run_cli(data, "apply", "-f", str(repo))
    assert again.exit_code == 0, again.output
    assert again.stdout == "b: unchanged\na: unchanged\n"


def test_applying_an_export_back_keeps_the_secrets_it_hid(data_dir: Path, tmp_path: Path) -> None:
    system = AutomationSystems(data_dir=data_dir)
    params = {"url": "https://api.example.com/v1", "headers": {"X-Api-Key": "k-real-9"}}
    store_task(system, "call", actions=[{"type": "http", "params": params}])
    exported = run_cli(data_dir, "export").stdout
    assert "k-real-9" not in exported and "***" in exported  # the export hides it
    out = tmp_path / "export.yaml"
    out.write_text(exported)
    result = run_cli(data_dir, "apply", "-f", str(out))
    assert result.exit_code == 0 and result.stdout == "call: unchanged\n", result.output
    # a changed export keeps the hidden value too: never *** stored over the secret
    out.write_text(exported.replace("https://api.example.com/v1", "https://api.example.com/v2"))
    assert run_cli(data_dir, "apply", "-f", str(out)).stdout.startswith("call: updated")
    [stored] = system.store.list_tasks()
    assert stored.actions[0].params["headers"] == {"X-Api-Key": "k-real-9"}
    assert stored.actions[0].params["url"].endswith("/v2")
