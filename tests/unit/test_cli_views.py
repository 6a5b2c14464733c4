"""Issue #19 part 5: views a person reads. ``task show`` and ``exec show`` describe (schedule
in words, next fires in two zones, policies, actions with secrets as ***, last runs),
``stats`` prints tables, ``--wide`` shows cells whole, tables fit the terminal, and
``-o yaml`` is the same data as ``-o json``."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import click
import pytest
import yaml

from tdauto import AutomationSystems, cli
from tdauto.models import Task
from tdauto.monitoring.rollups import record_final
from tests.support.cli import run_cli, store_execution, store_task, unsafe_chars

SECRET = "s3cret-bearer-value"
LONG_NAME = "nightly-" + "x" * 104 + "-the-end"  # 120 characters


@pytest.fixture
def task(system: AutomationSystems) -> Task:
    """A daily task at 09:00 in Tokyo (no DST: always 00:00 UTC), with policies, a secret
    header and one failed run."""
    action = {
        "type": "http",
        "params": {"url": "https://example.com/hook", "headers": {"Authorization": SECRET}},
    }
    stored = store_task(
        system,
        "tokyo-report",
        schedule_config={"hour": 9, "minute": 0, "timezone": "Asia/Tokyo"},
        actions=[action],
        retry={"max": 3},
        overlap="queue",
        lock="reports",
        deadline="10m",
    )
    record_final(system.store, store_execution(system, stored, error="HTTP 503 from the hook"))
    return stored


def section(output: str, title: str) -> str:
    """The lines of ``output`` from ``title:`` to the next blank line."""
    return output.split(f"\n{title}:\n", 1)[1].split("\n\n", 1)[0]


def test_task_show_describes_schedule_fires_policies_actions_and_runs(data, task) -> None:
    result = run_cli(data, "task", "show", task.name)
    assert result.exit_code == 0, result.output
    out = result.output
    assert re.search(r"^Schedule: +daily at 09:00 Asia/Tokyo", out, re.M), out
    fires = section(out, "Next runs").splitlines()
    assert fires[0].split() == ["UTC", "Asia/Tokyo"]
    assert len(fires) == 6  # the header and the 5 next fire times, each in both zones
    for line in fires[1:]:
        assert re.fullmatch(r" *\S+ 00:00:00 UTC +\S+ 09:00:00 JST *", line), line
    policies = section(out, "Policies")
    assert re.search(r"overlap: +queue", policies) and re.search(r"lock: +reports", policies)
    assert re.search(r"retry: +up to 3 times", policies)
    assert re.search(r"deadline: +10m", policies)
    actions = section(out, "Actions")
    assert "http" in actions and "https://example.com/hook" in actions
    assert '{"Authorization": "***"}' in actions and SECRET not in out
    runs = section(out, "Last runs")
    assert "FAILED" in runs and "HTTP 503 from the hook" in runs


def test_task_show_data_has_both_zones_and_the_last_runs(data, task) -> None:
    shown = json.loads(run_cli(data, "task", "show", task.name, "-o", "json").output)
    assert shown["schedule_text"] == "daily at 09:00 Asia/Tokyo"
    assert [u[11:] for u in shown["upcoming"]] == ["00:00:00+00:00"] * 5
    assert [u[11:] for u in shown["upcoming_local"]] == ["09:00:00+09:00"] * 5
    assert [r["status"] for r in shown["last_runs"]] == ["FAILED"]
    assert shown["actions"][0]["params"]["headers"] == {"Authorization": "***"}


def test_exec_show_describes_the_run_and_hides_secret_params(system, data, task) -> None:
    execution = store_execution(
        system, task, error="HTTP 503 from the hook", params={"password": SECRET, "user": "ops"}
    )
    result = run_cli(data, "exec", "show", execution.id)
    assert result.exit_code == 0, result.output
    out = result.output
    assert re.search(rf"^ID: +{execution.id} *$", out, re.M)
    assert re.search(r"^Task: +tokyo-report", out, re.M)
    assert re.search(r"^Status: +FAILED *$", out, re.M)
    assert re.search(r"^Error: +HTTP 503 from the hook", out, re.M)
    actions = section(out, "Actions")
    assert '"password": "***"' in actions and '"user": "ops"' in actions
    assert SECRET not in out


def test_stats_prints_tables_not_python_dicts(system, data, task) -> None:
    for _ in range(2):
        record_final(system.store, store_execution(system, task))  # two SUCCEEDED runs
    result = run_cli(data, "stats")
    assert result.exit_code == 0, result.output
    assert "{'" not in result.output and "{" not in result.output
    by_status = section(result.output, "Runs by status").splitlines()
    assert by_status[0].split() == ["status", "count"]
    assert sorted(line.split() for line in by_status[1:]) == [["FAILED", "1"], ["SUCCEEDED", "2"]]
    by_type = section(result.output, "Tasks by type").splitlines()
    assert [line.split() for line in by_type[1:]] == [["maintenance", "1"]]


def test_wide_shows_a_long_name_whole_and_the_default_cuts_it(system, data) -> None:
    record_final(system.store, store_execution(system, store_task(system, LONG_NAME)))
    assert len(LONG_NAME) == 120
    for args in (["task", "list"], ["exec", "list"]):
        cut = run_cli(data, *args)
        assert cut.exit_code == 0, cut.output
        assert LONG_NAME not in cut.output and LONG_NAME[:20] in cut.output and "…" in cut.output
        wide = run_cli(data, *args, "--wide")
        assert LONG_NAME in wide.output, wide.output


def test_tables_fit_the_terminal_cutting_text_before_ids(system, data) -> None:
    task = store_task(system, LONG_NAME)
    next_run = f"{task.next_run_at:%Y-%m-%d %H:%M:%S} UTC"
    result = run_cli(data, "task", "list", COLUMNS="100")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 2 and all(len(line) <= 100 for line in lines), result.output
    # the name gives up its room; the id, type and next run time stay whole
    assert lines[1].startswith(LONG_NAME[:15]) and "…" in lines[1]
    assert task.id[:8] in lines[1] and "maintenance" in lines[1] and next_run in lines[1]
    narrow = run_cli(data, "task", "list", COLUMNS="60").output.splitlines()
    assert all(len(line) <= 60 for line in narrow), narrow
    assert narrow[0].split()[:3] == ["name", "id", "type"]  # no column squeezed to nothing
    assert narrow[1].startswith("nightly")
    wide = run_cli(data, "task", "list", "--wide", COLUMNS="100")
    assert LONG_NAME in wide.output and len(wide.output.splitlines()) == 2


@pytest.mark.parametrize(
    "args",
    [
        ["task", "list"],
        ["task", "show", "tokyo-report"],
        ["exec", "list"],
        ["exec", "show", "EXEC"],
        ["stats"],
    ],
)
def test_yaml_is_the_same_data_as_json(system, data, task, args) -> None:
    execution_id = system.store.list_executions(limit=1)[0].id
    args = [execution_id if a == "EXEC" else a for a in args]
    as_json = json.loads(run_cli(data, *args, "-o", "json").output)
    as_yaml = yaml.safe_load(run_cli(data, *args, "-o", "yaml").output)
    synonym = json.loads(run_cli(data, *args, "--json").output)
    if args == ["stats"]:  # the window ends now: a moment later for each command
        for value in (as_json, as_yaml, synonym):
            value["executions"].pop("window")
    assert as_yaml == as_json == synonym
    assert SECRET not in json.dumps(as_yaml)


def test_yaml_escapes_what_a_terminal_acts_on(system, data) -> None:
    name = "bad\x1b]0;owned\x07name\u202e"
    store_task(system, name)
    result = run_cli(data, "task", "list", "-o", "yaml")
    assert result.exit_code == 0, result.output
    assert not unsafe_chars(result.output)
    assert [t["name"] for t in yaml.safe_load(result.output)] == [name]
    readable = store_task(system, "sauvegarde-données-日本")
    shown = run_cli(data, "task", "show", readable.id, "-o", "yaml").output
    assert "name: sauvegarde-données-日本" in shown  # other scripts stay readable


def test_json_and_yaml_together_is_a_usage_error(data) -> None:
    result = run_cli(data, "task", "list", "--json", "-o", "yaml")
    assert result.exit_code == 2
    assert "--json means -o json" in result.output


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += _commands(command, f"{prefix}{name} ")
        else:
            found.append((f"{prefix}{name}", command))
    return found


def test_every_command_with_json_takes_output_and_wide() -> None:
    with_json = []
    for name, command in _commands(cli.main):
        flags = {opt for p in command.params for opt in p.opts}
        if "--json" in flags:
            with_json.append(name)
            assert {"-o", "--output", "--wide"} <= flags, name
    assert {"task list", "task show", "exec list", "exec show", "stats", "config"} <= set(with_json)


def test_config_prints_yaml_too(data) -> None:
    as_json = json.loads(run_cli(data, "config").stdout)
    as_yaml = yaml.safe_load(run_cli(data, "config", "-o", "yaml").stdout)
    assert as_yaml == as_json and as_json["data_dir"] == str(data)


def test_task_show_lists_the_fires_the_scheduler_will_use(system, data) -> None:
    from tdauto.scheduler import compute_next_ts

    task = store_task(
        system,
        "spread-out",
        schedule="interval",
        schedule_config={"every": "1h", "spread": 1200, "jitter": 300},
    )
    shown = json.loads(run_cli(data, "task", "show", task.name, "-o", "json").output)
    after, expected = shown["upcoming"][0], []
    nxt = compute_next_ts(task, datetime.fromisoformat(after).timestamp() - 1)
    for _ in range(5):
        assert nxt is not None
        expected.append(datetime.fromtimestamp(nxt, UTC).isoformat())
        nxt = compute_next_ts(task, nxt)
    assert shown["upcoming"] == expected
    paused = json.loads(run_cli(data, "task", "pause", task.name, "--json").output)
    assert paused["enabled"] is False
    shown = run_cli(data, "task", "show", task.name).output
    assert "none (paused)" in section(shown, "Next runs")
