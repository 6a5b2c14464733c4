"""Hints when nothing will happen (issue #19 part 8): a task whose action the running workers
cannot run (their advertised allow-lists or plugins refuse it, or no worker reads its queue)
is stored with a warning, and ``task run --wait`` says why a run stays QUEUED."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tdauto import AutomationSystems
from tdauto.actions.registry import REGISTRY
from tdauto.resources import capabilities, worker_hooks
from tdauto.resources.sampler import Sampler
from tdauto.settings import Settings
from tests.support.cli import definition, run_cli, store_task
from tests.support.workers import publish_worker

SHELL = {"type": "shell", "params": {"argv": ["echo", "hi"]}}


def shell_task_file(folder: Path, name: str = "greet") -> Path:
    path = folder / f"{name}.json"
    path.write_text(json.dumps(definition(name, type="maintenance", actions=[SHELL])))
    return path


def create(data: Path, folder: Path, **env: str) -> Any:
    """``task create`` from the CLI's shell, which allows echo (the workers may not)."""
    return run_cli(data, "task", "create", "-f", str(shell_task_file(folder)), **env)


def test_a_task_the_workers_may_not_run_is_created_with_a_warning(tmp_path: Path) -> None:
    data = tmp_path / "data"
    system = AutomationSystems(data_dir=data)
    publish_worker(system, "cpu", shell_allow=[])
    result = create(data, tmp_path, TDAUTO_SHELL_ALLOW="echo")
    assert result.exit_code == 0, result.output
    assert "greet: created" in result.stdout
    assert (
        "warning: task 'greet': actions.0 (shell): no running worker on tdauto.cpu can run "
        "it; cpu@h1: actions.0.params.argv: the shell action is off: TDAUTO_SHELL_ALLOW is "
        "empty"
    ) in result.stderr


def test_a_program_the_workers_list_not_is_named_with_their_list(tmp_path: Path) -> None:
    data = tmp_path / "data"
    system = AutomationSystems(data_dir=data)
    publish_worker(system, "cpu", host="h1", shell_allow=["echo"])
    publish_worker(system, "cpu", host="h2", shell_allow=["rsync"])
    result = create(data, tmp_path, TDAUTO_SHELL_ALLOW="echo")
    assert result.exit_code == 0, result.output
    assert "1 of the 2 workers on tdauto.cpu can run it; cpu@h2:" in result.stderr
    assert "program 'echo' is not allowed: TDAUTO_SHELL_ALLOW lists rsync" in result.stderr


def test_workers_that_can_run_it_give_no_warning(tmp_path: Path) -> None:
    data = tmp_path / "data"
    system = AutomationSystems(data_dir=data)
    publish_worker(system, "cpu", shell_allow=["echo"])
    result = create(data, tmp_path, TDAUTO_SHELL_ALLOW="echo")
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr


def test_an_action_a_worker_has_no_plugin_for(tmp_path: Path) -> None:
    data = tmp_path / "data"
    system = AutomationSystems(data_dir=data)
    publish_worker(system, "cpu", actions=["cleanup"], shell_allow=["echo"])
    result = create(data, tmp_path, TDAUTO_SHELL_ALLOW="echo")
    assert "cpu@h1: action 'shell' is not registered there" in result.stderr
    assert "TDAUTO_PLUGINS" in result.stderr


def test_a_class_no_worker_consumes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    system = AutomationSystems(data_dir=data)
    publish_worker(system, "storage", shell_allow=["echo"])
    result = create(data, tmp_path, TDAUTO_SHELL_ALLOW="echo")
    assert "actions.0 (shell): no worker is consuming tdauto.cpu" in result.stderr


def test_without_workers_create_warns_of_nothing(tmp_path: Path) -> None:
    result = create(tmp_path / "data", tmp_path, TDAUTO_SHELL_ALLOW="echo")
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr


def test_task_run_warns_too(tmp_path: Path) -> None:
    data = tmp_path / "data"
    system = AutomationSystems(data_dir=data, shell_allow=["echo"])
    store_task(system, "greet", actions=[SHELL])
    publish_worker(system, "cpu", shell_allow=[])
    result = run_cli(data, "task", "run", "greet", TDAUTO_SHELL_ALLOW="echo")
    assert result.stdout.startswith("started ")
    assert "the shell action is off: TDAUTO_SHELL_ALLOW is empty" in result.stderr


def test_the_facade_returns_the_warnings(tmp_path: Path) -> None:
    system = AutomationSystems(data_dir=tmp_path / "data", shell_allow=["echo"])
    task = store_task(system, "greet", actions=[SHELL])
    publish_worker(system, "cpu", shell_allow=[])
    assert system.worker_warnings() == system.worker_warnings(["greet"])
    [line] = system.worker_warnings([task])
    assert line.startswith("task 'greet': actions.0 (shell): no running worker")


def test_a_run_queued_where_no_worker_consumes_says_so(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store_task(AutomationSystems(data_dir=data), "nightly")  # cleanup: the storage class
    result = run_cli(data, "task", "run", "nightly", "--wait", "--timeout", "0.5")
    assert result.exit_code == 1, result.output
    hint = "no worker is consuming tdauto.storage: the run stays QUEUED until one does"
    assert f"warning: {hint}" in result.stderr
    assert f"still QUEUED after 0.5s: {hint}" in result.stderr


def test_a_worker_reading_the_queue_silences_the_hint(tmp_path: Path) -> None:
    data = tmp_path / "data"
    system = AutomationSystems(data_dir=data)
    store_task(system, "nightly")
    publish_worker(system, "storage")
    result = run_cli(data, "task", "run", "nightly", "--wait", "--timeout", "0.5")
    assert "still QUEUED after 0.5s" in result.stderr
    assert "no worker is consuming" not in result.stderr


def test_a_worker_advertises_its_lists_and_actions_with_its_samples(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", shell_allow=["rsync"], task_secrets=["APP_*"])
    system = AutomationSystems(data_dir=settings.data_dir)
    runs = capabilities.advertised(settings, REGISTRY.names())
    sampler = Sampler(system.store, settings, "cpu", 2, lambda: 0, runs)
    sampler.start()
    try:
        while not system.store.samples():
            sampler.join(0.05)
    finally:
        sampler.stop()
        sampler.join()
    [sample] = system.store.samples()
    assert sample["runs"]["shell_allow"] == ["rsync"]
    assert sample["runs"]["task_secrets"] == ["APP_*"]
    assert sample["runs"]["update_allow"] == [] and sample["runs"]["check_allow"] == []
    assert {"shell", "cleanup", "backup"} <= set(sample["runs"]["actions"])


def test_the_worker_hooks_give_the_sampler_what_the_worker_runs(
    tmp_path: Path, monkeypatch: Any
) -> None:
    made: list[tuple[Any, ...]] = []
    monkeypatch.setattr(worker_hooks, "Sampler", lambda *args: made.append(args))
    settings = Settings(data_dir=tmp_path / "data", check_allow=["tar"])
    system = AutomationSystems(data_dir=settings.data_dir)
    worker_hooks.install(system.store, settings, "storage", 4)
    runs = made[0][-1]
    assert runs["check_allow"] == ["tar"] and "shell" in runs["actions"]
