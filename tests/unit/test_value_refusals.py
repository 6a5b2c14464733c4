"""Issue #18 findings 7 and 9: values pydantic would take but a user never means are refused
naming the field (NaN and infinity, booleans as numbers, duplicate keys, overrides of actions
the task lacks, schedules that cannot fire, control characters in names); YAML reads numbers
and words as YAML 1.2 does; a past ``once`` warns; records stored before still load."""

from __future__ import annotations

import asyncio
import json
import math
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from tdauto import AutomationSystems, InvalidInput, Task
from tdauto.errors import ScheduleWarning
from tdauto.settings import Settings
from tests.support.tasks import good_task, run_cli, store_fingerprint

NAN, INF = math.nan, math.inf


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def system(data_dir: Path) -> AutomationSystems:
    return AutomationSystems(data_dir=data_dir)


def create(system: AutomationSystems, definition: dict[str, Any]) -> Task:
    return asyncio.run(system.create_task(**definition))


def refusal(system: AutomationSystems, data_dir: Path, definition: dict[str, Any]) -> str:
    before = store_fingerprint(data_dir)
    with pytest.raises(InvalidInput) as caught:
        create(system, definition)
    assert store_fingerprint(data_dir) == before
    return str(caught.value)


def cleanup(**params: Any) -> list[dict[str, Any]]:
    return [{"type": "cleanup", "params": {"older_than": "30days", **params}}]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- NaN and infinity ------------------------------------------------------------------------

NOT_FINITE = [
    (
        "older_than NaN (was stored as null)",
        good_task(actions=cleanup(older_than=NAN)),
        "actions.0.params.older_than",
    ),
    ("deadline NaN (was no limit)", good_task(deadline=NAN), "deadline"),
    (
        "timeout inf (was no limit)",
        good_task(actions=[{**cleanup()[0], "timeout": INF}]),
        "actions.0.timeout",
    ),
    (
        "every NaN (was a raw ValueError)",
        good_task(schedule="interval", schedule_config={"every": NAN}),
        "schedule_config.every",
    ),
    (
        "jitter -inf",
        good_task(schedule_config={"hour": 2, "jitter": -INF}),
        "schedule_config.jitter",
    ),
    ("misfire_grace inf", good_task(misfire_grace=INF), "misfire_grace"),
    ("retry backoff NaN", good_task(retry={"max": 2, "backoff": NAN}), "retry.backoff"),
    # strings pydantic reads as infinity
    (
        "jitter 'inf'",
        good_task(schedule_config={"hour": 2, "jitter": "inf"}),
        "schedule_config.jitter",
    ),
    (
        "spread '1e999'",
        good_task(schedule_config={"hour": 2, "spread": "1e999"}),
        "schedule_config.spread",
    ),
]


@pytest.mark.parametrize(
    ("case", "definition", "field"), NOT_FINITE, ids=[c[0] for c in NOT_FINITE]
)
def test_nan_and_infinity_are_refused_naming_the_field(system, data_dir, case, definition, field):
    message = refusal(system, data_dir, definition)
    assert message.startswith(f"{field}: "), message
    assert "is not a number tdauto can use; give a finite number" in message


def test_a_duration_beyond_any_float_is_refused_naming_the_field(system, data_dir) -> None:
    # found by the fuzz test: 10**400 raised a raw OverflowError
    message = refusal(system, data_dir, good_task(actions=cleanup(older_than=10**400)))
    assert message.startswith("actions.0.params.older_than: duration is too large"), message


def test_nan_in_a_json_task_file_is_refused_naming_the_field(data_dir, tmp_path) -> None:
    text = json.dumps(good_task())[:-1] + ', "deadline": NaN}'
    result = run_cli(data_dir, "task", "create", "-f", str(write(tmp_path, "t.json", text)))
    assert result.exit_code == 2, result.output
    where = f'error: {tmp_path / "t.json"}: tasks[0] "nightly-cleanup": '
    assert result.stderr.startswith(where + "deadline: nan is not a number"), result.stderr


def test_nan_in_a_yaml_task_file_is_refused_naming_the_field(data_dir, tmp_path) -> None:
    text = (
        "name: t\ntype: maintenance\nschedule: daily\nschedule_config: {hour: 2}\n"
        "actions: [{type: cleanup, params: {older_than: .nan}}]\n"
    )
    result = run_cli(data_dir, "task", "create", "-f", str(write(tmp_path, "t.yaml", text)))
    assert result.exit_code == 2, result.output
    assert 'tasks[0] "t": actions[0].params.older_than: nan is not a number' in result.stderr


def test_a_setting_that_is_not_finite_names_its_variable(monkeypatch) -> None:
    # NaN fails every bound; infinity passed ge=0 and meant "never kill"
    monkeypatch.setenv("TDAUTO_KILL_GRACE_S", "inf")
    with pytest.raises(ValidationError, match="TDAUTO_KILL_GRACE_S: inf is not a finite number"):
        Settings()


def test_a_wait_timeout_that_is_not_finite_is_refused(data_dir) -> None:
    result = run_cli(data_dir, "task", "run", "anything", "--wait", "--timeout", "inf")
    assert result.exit_code == 2
    assert "'inf' is not a finite number of seconds" in result.stderr


# --- booleans where a number is taken --------------------------------------------------------

BOOLEANS = [
    ("hour true (was 1)", good_task(schedule_config={"hour": True}), "schedule_config.hour"),
    ("priority false", good_task(priority=False), "priority"),
    ("retry max true", good_task(retry={"max": True}), "retry.max"),
    (
        "a param's integer",
        good_task(actions=[{"type": "backup", "params": {"target": "database", "keep": True}}]),
        "actions.0.params.keep",
    ),
]


@pytest.mark.parametrize(("case", "definition", "field"), BOOLEANS, ids=[c[0] for c in BOOLEANS])
def test_a_boolean_is_not_taken_as_a_number(system, data_dir, case, definition, field) -> None:
    message = refusal(system, data_dir, definition)
    assert message.startswith(f"{field}: expected a number, got "), message


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"hour": True}, "schedule_config.hour: expected a number, got true"),
        ({"hour": 2, "jitter": INF}, "schedule_config.jitter: inf is not a number"),
    ],
)
def test_a_schedule_preview_is_held_to_the_same_checks(system, config, message) -> None:
    with pytest.raises(InvalidInput) as caught:
        system.preview_schedule("daily", config, 2)
    assert str(caught.value).startswith(message)


def test_an_update_is_refused_the_same_values(system, data_dir) -> None:
    task = create(system, good_task())
    before = store_fingerprint(data_dir)
    with pytest.raises(InvalidInput, match=r"^deadline: nan is not a number"):
        asyncio.run(system.update_task(task.id, deadline=NAN))
    with pytest.raises(InvalidInput, match=r"^schedule_config\.hour: expected a number"):
        asyncio.run(system.update_task(task.id, schedule_config={"hour": True}))
    assert store_fingerprint(data_dir) == before


def test_a_boolean_in_a_trigger_override_is_refused(system) -> None:
    task = create(system, good_task(actions=[{"type": "backup", "params": {"target": "database"}}]))
    with pytest.raises(InvalidInput, match=r"^params\.0\.keep: expected a number, got true"):
        system.trigger_sync(task.id, {"backup": {"keep": True}})


# --- YAML 1.2 and duplicate keys -------------------------------------------------------------


REPO = Path(__file__).resolve().parents[2]


def yaml_documents() -> list[tuple[str, str]]:
    """Every example task file and every YAML block of the docs."""
    found = [(p.name, p.read_text()) for p in sorted((REPO / "examples").glob("*.yaml"))]
    for page in sorted((REPO / "docs").glob("*.md")):
        blocks = page.read_text().split("```yaml\n")[1:]
        found += [(f"{page.name}#{i}", b.split("```")[0]) for i, b in enumerate(blocks)]
    return found


@pytest.mark.parametrize(("name", "text"), yaml_documents(), ids=[d[0] for d in yaml_documents()])
def test_the_examples_and_docs_read_the_same_under_yaml_1_2(name, text) -> None:
    from tdauto.intake import loads_yaml

    assert loads_yaml(text, name) == yaml.safe_load(text)


def test_yaml_reads_numbers_and_words_as_yaml_1_2(data_dir, tmp_path) -> None:
    # YAML 1.1 (PyYAML's safe_load) read `no` as false; 0o10 is octal in both
    text = (
        "name: t\ntype: maintenance\nschedule: daily\nschedule_config: {hour: 10, minute: 0o10}\n"
        "description: no\nactions: [{type: cleanup, params: {older_than: 30days}}]\n"
    )
    result = run_cli(
        data_dir, "task", "create", "-f", str(write(tmp_path, "t.yaml", text)), "--json"
    )
    assert result.exit_code == 0, result.output
    [task] = json.loads(result.stdout)
    assert task["schedule_config"]["hour"] == 10
    assert task["schedule_config"]["minute"] == 8
    assert task["description"] == "no"


def test_a_number_with_a_leading_zero_is_refused_as_ambiguous(data_dir, tmp_path) -> None:
    # YAML 1.1 read 010 as octal 8 (hour 8), YAML 1.2 as 10: one file, two schedules
    text = "name: t\ntype: maintenance\nschedule: daily\nschedule_config:\n  hour: 010\n"
    result = run_cli(data_dir, "task", "create", "-f", str(write(tmp_path, "t.yaml", text)))
    assert result.exit_code == 2, result.output
    [line] = result.output.strip().splitlines()
    assert "t.yaml line 5" in line and "010 is octal 8 in YAML 1.1 and 10 in YAML 1.2" in line
    assert "write 10 (or 0o10 for octal)" in line and "Traceback" not in result.output
    assert run_cli(data_dir, "task", "list", "--json").stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("name", "text", "field"),
    [
        ("t.yaml", "name: a\ntype: maintenance\nname: b\n", "name: is given twice (lines 1 and 3"),
        ("t.yaml", "schedule_config: {hour: 2, hour: 3}\n", "hour: is given twice (line 1"),
        ("t.json", '{"name": "a", "type": "maintenance", "name": "b"}', "name: is given twice"),
    ],
)
def test_a_key_given_twice_is_refused(data_dir, tmp_path, name, text, field) -> None:
    result = run_cli(data_dir, "task", "create", "-f", str(write(tmp_path, name, text)))
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {field}"), result.stderr
    assert "Traceback" not in result.output


def test_a_params_option_with_a_key_twice_is_refused(system, data_dir) -> None:
    create(system, good_task())
    result = run_cli(
        data_dir, "task", "run", "nightly-cleanup", "--params", '{"cleanup": {}, "cleanup": {}}'
    )
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: cleanup: is given twice in one mapping of --params")


def test_a_field_pydantic_refuses_is_one_line_too(data_dir, tmp_path) -> None:
    text = json.dumps(good_task(schedule_config={"hour": 25}))
    result = run_cli(data_dir, "task", "create", "-f", str(write(tmp_path, "t.json", text)))
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        f'error: {tmp_path / "t.json"}: tasks[0] "nightly-cleanup": '
        "schedule_config.hour: Input should be less than or equal to 23\n"
    ), result.stderr


def test_a_key_with_a_newline_is_quoted_in_the_one_line(system, data_dir) -> None:
    # found by fuzzing: the key was printed as it was, splitting the line
    message = refusal(system, data_dir, good_task(retry={"\n": 0}))
    assert message == "retry.'\\n': Extra inputs are not permitted", message


# --- trigger overrides -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "field"),
    [({"backup": {"retention": "7days"}}, "params.backup"), ({"3": {}}, "params.3")],
)
def test_an_override_for_an_action_the_task_lacks_is_refused(system, params, field) -> None:
    task = create(system, good_task())
    with pytest.raises(InvalidInput) as caught:
        system.trigger_sync(task.id, params)
    assert str(caught.value).startswith(f"{field}: the task has no action")
    assert "its actions are 0 (cleanup)" in str(caught.value)
    assert system.store.list_executions(task.id, None, 10) == []


# --- schedules that cannot fire --------------------------------------------------------------


def test_a_cron_that_matches_no_date_is_refused(system, data_dir) -> None:
    definition = good_task(schedule="cron", schedule_config={"expression": "0 0 31 2 *"})
    message = refusal(system, data_dir, definition)
    assert message.startswith("schedule_config.expression: '0 0 31 2 *' matches no date")


def test_an_end_date_before_the_start_date_is_refused(system, data_dir) -> None:
    config = {"hour": 2, "start_date": "2031-01-01T00:00:00Z", "end_date": "2030-01-01T00:00:00Z"}
    message = refusal(system, data_dir, good_task(schedule_config=config))
    assert message.startswith("schedule_config.end_date: 2030-01-01T00:00:00+00:00 is before")


def test_a_window_with_no_fire_time_is_refused(system, data_dir) -> None:
    config = {"hour": 2, "start_date": "2031-01-01T03:00:00Z", "end_date": "2031-01-01T04:00:00Z"}
    message = refusal(system, data_dir, good_task(schedule_config=config))
    assert message.startswith("schedule_config.end_date: ")
    assert "never fire" in message


def test_a_past_once_is_stored_with_a_warning(system) -> None:
    definition = good_task(schedule="once", schedule_config={"at": "2000-01-01T00:00:00Z"})
    with pytest.warns(
        ScheduleWarning, match=r"^schedule_config\.at: 2000-01-01T00:00:00\+00:00 is past"
    ):
        task = create(system, definition)
    assert system.store.get_task(task.id) is not None


def test_a_past_once_that_runs_after_another_task_does_not_warn(system) -> None:
    # docs/execution.md's dependent-only task
    create(system, good_task(name="nightly-backup"))
    definition = good_task(
        name="after-backup",
        schedule="once",
        schedule_config={"at": "2000-01-01T00:00:00Z"},
        run_after={"task": "nightly-backup", "on": "success"},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", ScheduleWarning)
        create(system, definition)


def test_the_cli_prints_the_warning_of_a_past_once(data_dir, tmp_path) -> None:
    text = json.dumps(good_task(schedule="once", schedule_config={"at": "2000-01-01T00:00:00Z"}))
    result = run_cli(data_dir, "task", "create", "-f", str(write(tmp_path, "t.json", text)))
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("warning: schedule_config.at: 2000-01-01T00:00:00+00:00")
    assert result.stdout == "nightly-cleanup: created\n"


def test_a_past_end_date_warns(system) -> None:
    config = {"hour": 2, "end_date": "2001-01-01T00:00:00Z"}
    with pytest.warns(ScheduleWarning, match=r"^schedule_config\.end_date: .* is past"):
        create(system, good_task(schedule_config=config))


# --- control characters in names (finding 9) -------------------------------------------------

CONTROLS = ["\x1b[31m", "\x00", "a\nb", "\u202e", "\u2028", "\u2029", "zero\u200bwidth", "\x7f"]


@pytest.mark.parametrize(
    "bad", CONTROLS, ids=[f"U+{ord(c):04X}" for c in "\x1b\x00\n\u202e\u2028\u2029\u200b\x7f"]
)
def test_a_control_character_in_a_task_name_is_refused(system, data_dir, bad) -> None:
    message = refusal(system, data_dir, good_task(name=f"task{bad}"))
    assert message.startswith("name: has the control character U+")
    assert "a task name must be printable text: remove it" in message


def test_a_rename_to_a_name_with_a_control_character_is_refused(system, data_dir) -> None:
    task = create(system, good_task())
    before = store_fingerprint(data_dir)
    with pytest.raises(
        InvalidInput, match=r"^name: has the control character U\+001B at character 4"
    ):
        asyncio.run(system.update_task(task.id, name="new\x1b]0;owned\x07"))
    assert store_fingerprint(data_dir) == before


def test_a_control_character_in_the_upstream_name_is_refused(system, data_dir) -> None:
    message = refusal(system, data_dir, good_task(run_after={"task": "up\u202estream"}))
    assert message.startswith("run_after.task: has the control character U+202E")


def test_a_control_character_in_a_task_file_name_is_refused(data_dir, tmp_path) -> None:
    text = 'name: "evil\\e[2J"\ntype: maintenance\nschedule: daily\nschedule_config: {hour: 2}\n'
    text += "actions: [{type: cleanup, params: {older_than: 30days}}]\n"
    result = run_cli(data_dir, "task", "create", "-f", str(write(tmp_path, "t.yaml", text)))
    assert result.exit_code == 2, result.output
    where = f'error: {tmp_path / "t.yaml"}: tasks[0] "evil\\x1b[2J": '
    assert result.stderr.startswith(where + "name: has the control character U+001B")


# --- what was stored before still loads ------------------------------------------------------


def test_records_stored_before_the_checks_still_load_and_pause(system) -> None:
    # Given definitions no create would accept now, written straight to the store
    old = Task.model_validate(
        good_task(
            name="old\x1bname",
            description="d" * 10_000,
            schedule="once",
            schedule_config={"at": "2000-01-01T00:00:00Z"},
        )
    )
    system.store.create_task(old, None)
    # When they are read back and paused, Then they load as they were
    [loaded] = system.store.list_tasks()
    assert loaded.name == "old\x1bname" and len(loaded.description) == 10_000
    paused = asyncio.run(system.pause_task(old.id))
    assert paused.enabled is False
