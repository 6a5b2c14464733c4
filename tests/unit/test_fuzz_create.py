"""Fuzzing ``create_task`` and task files: whatever the input, it is either stored and valid
or refused with tdauto's ``InvalidInput`` naming a field, nothing else is raised, and a
refusal leaves the store as it was. Derandomized with no example database, so every run (and
CI) tries the same inputs."""

from __future__ import annotations

import asyncio
import json
import math
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tdauto import AutomationSystems, InvalidInput, Task
from tdauto.errors import ScheduleWarning
from tdauto.intake import loads_json, loads_yaml
from tests.support.tasks import good_task, store_fingerprint

UPSTREAM = "fuzz-upstream"
FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Text with the characters that break things: controls, bidi, separators, surrogates aside.
text = st.text(
    st.characters(blacklist_categories=["Cs"]) | st.sampled_from("\x00\x1b\n\u202e\u2028"),
    max_size=12,
)
numbers = (
    st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([0, 1, 2, 23, 59, 60, -1, 1.5, 10**400])
)
scalars = st.none() | st.booleans() | numbers | text
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` nine times in ten: a fuzzer that only sends noise never gets past the first
    check, so most fields are plausible and one here or there is not."""
    return st.sampled_from(range(10)).flatmap(lambda roll: bad if roll == 9 else good)


durations = mostly(
    st.sampled_from(["30days", "5m", "90s", "1w", 3600, 1.5]),
    st.sampled_from(["0s", "nan", "inf", "-1d", "", True]) | numbers,
)
config_values = {
    "hour": mostly(st.integers(0, 23), scalars),
    "minute": mostly(st.integers(0, 59), scalars),
    "every": durations,
    "day": mostly(st.integers(1, 31) | st.just("last"), scalars),
    "day_of_week": mostly(st.sampled_from(["mon", "sun", 0, 6]), scalars),
    "expression": mostly(
        st.sampled_from(["*/5 * * * *", "0 2 * * *"]), st.just("0 0 31 2 *") | text
    ),
    "at": mostly(st.sampled_from(["2099-01-01T00:00:00Z", "2000-01-01T00:00:00Z"]), scalars),
    "timezone": mostly(st.sampled_from(["Europe/Paris", "UTC"]), text),
    "jitter": mostly(st.sampled_from([0, 5, 30]), numbers),
    "start_date": mostly(st.just("2030-01-01T00:00:00Z"), scalars),
    "end_date": mostly(st.sampled_from(["2031-01-01T00:00:00Z", "2029-01-01T00:00:00Z"]), scalars),
    "bogus": json_values,
}
schedules = {
    "daily": ["hour", "minute"],
    "hourly": ["minute"],
    "interval": ["every"],
    "once": ["at"],
    "cron": ["expression"],
    "monthly": ["day", "hour"],
    "weekly": ["day_of_week", "hour"],
}


@st.composite
def schedule_pair(draw: st.DrawFn) -> tuple[Any, Any]:
    """A schedule type and a config that mostly fits it."""
    kind = draw(mostly(st.sampled_from(sorted(schedules)), scalars))
    keys = list(schedules.get(kind, [])) if isinstance(kind, str) else []
    keys += draw(mostly(st.just([]), st.lists(st.sampled_from(sorted(config_values)), max_size=2)))
    config = {key: draw(config_values[key]) for key in keys}
    return kind, draw(mostly(st.just(config), json_values))


cleanup_params = st.fixed_dictionaries(
    {"older_than": durations},
    optional={
        "dry_run": mostly(st.booleans(), scalars),
        "recursive": mostly(st.booleans(), scalars),
    },
)
backup_params = st.fixed_dictionaries(
    {"target": mostly(st.just("database"), text)},
    optional={
        "keep": mostly(st.integers(1, 9), scalars),
        "retention": mostly(st.just("7days"), durations),
    },
)
action = mostly(
    st.fixed_dictionaries(
        {"type": st.just("cleanup"), "params": cleanup_params}, optional={"timeout": durations}
    )
    | st.fixed_dictionaries({"type": st.just("backup"), "params": backup_params}),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["nope", ""]) | scalars},
        optional={"params": json_values, "retry": json_values},
    ),
)
definition = st.fixed_dictionaries(
    {
        "name": mostly(st.text("abcdefgh-", min_size=3, max_size=10), text),
        "type": mostly(st.sampled_from(["maintenance", "deployment", "Optimization"]), scalars),
        "schedule": schedule_pair(),
        "actions": mostly(st.lists(action, min_size=1, max_size=3), json_values),
    },
    optional={
        "resources": mostly(
            st.fixed_dictionaries(
                {}, optional={"cpu": st.integers(0, 100), "memory": st.just(5.5)}
            ),
            st.dictionaries(st.sampled_from(["cpu", "memory", "gpu"]), numbers, max_size=2),
        ),
        "priority": mostly(st.integers(0, 9), scalars),
        "deadline": durations,
        "description": text,
        "enabled": mostly(st.booleans(), scalars),
        "run_after": mostly(
            st.fixed_dictionaries({"task": st.just(UPSTREAM)}, optional={"on": text}),
            st.fixed_dictionaries({"task": text}) | json_values,
        ),
        "lock": mostly(st.sampled_from(["db", "app-db"]), text),
        "misfire_grace": durations,
        "retry": mostly(
            st.fixed_dictionaries({"max": st.integers(0, 5)}, optional={"backoff": durations}),
            json_values,
        ),
    },
).map(lambda d: {**d, "schedule": d["schedule"][0], "schedule_config": d["schedule"][1]})
# now and then a key no task has, anywhere in it
definition = mostly(
    definition, st.tuples(definition, text, json_values).map(lambda t: {**t[0], t[1]: t[2]})
)


@pytest.fixture
def system(tmp_path: Path) -> AutomationSystems:
    """A system with one task the fuzzed ones may run after."""
    system = AutomationSystems(data_dir=tmp_path / "data")
    system.create_task_from(good_task(name=UPSTREAM))
    return system


def all_finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(all_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(all_finite(v) for v in value)
    return True


def outcome(system: AutomationSystems, attempt: Any) -> Task | None:
    """Run ``attempt()``; a refusal must be InvalidInput and leave the store unchanged, and a
    stored task must read back equal and be finite throughout."""
    data_dir = system.settings.data_path
    before = store_fingerprint(data_dir)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ScheduleWarning)
            task = attempt()
    except InvalidInput as exc:
        event(f"refused on {str(exc.field).split('.')[0][:20]}")
        assert exc.field and "\n" not in str(exc), str(exc)
        assert store_fingerprint(data_dir) == before, str(exc)
        return None
    event("stored")
    stored = system.store.get_task(task.id)
    assert stored is not None and stored.definition() == task.definition()
    assert all_finite(stored.model_dump())
    assert Task.model_validate_json(stored.model_dump_json()).definition() == task.definition()
    return task


@FUZZ
@given(data=definition)
def test_create_task_stores_a_valid_task_or_refuses_naming_a_field(system, data) -> None:
    fields = dict(data)
    name, type_, schedule = fields.pop("name"), fields.pop("type"), fields.pop("schedule")
    outcome(system, lambda: asyncio.run(system.create_task(name, type_, schedule, **fields)))


def dump(data: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data)
    return yaml.safe_dump(data, allow_unicode=True)


@FUZZ
@given(data=definition | json_values, fmt=st.sampled_from(["json", "yaml"]))
def test_a_task_file_is_created_or_refused_naming_a_field(system, data, fmt) -> None:
    """The loader then the facade, as ``tdauto task create -f`` does."""
    loads = loads_json if fmt == "json" else loads_yaml
    try:
        loaded = loads(dump(data, fmt), "t." + fmt)
    except InvalidInput:
        return
    items = loaded if isinstance(loaded, list) else [loaded]
    for item in items:
        if isinstance(item, dict):
            outcome(system, lambda item=item: system.create_task_from(item))
        else:
            with pytest.raises(InvalidInput):
                system.create_task_from(item)


@FUZZ
@given(raw=st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_any_text_read_as_yaml_or_json_is_a_value_or_a_refusal(raw) -> None:
    for loads in (loads_yaml, loads_json):
        try:
            loads(raw, "t")
        except InvalidInput as exc:
            assert "\n" not in str(exc), str(exc)
