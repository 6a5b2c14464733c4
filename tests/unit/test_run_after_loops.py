"""``run_after`` loops are refused by the store's atomic step, and pausing, resuming and
deleting a task never validate its definition again (docs/architecture.md, "Tasks")."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tdauto import AutomationSystems, InvalidInput, ProcessType, ScheduleType


@pytest.fixture(params=["files", "redis"])
def system(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AutomationSystems]:
    """A system on a data dir (local mode) or on a private Redis."""
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    made = AutomationSystems(broker_url=url, data_dir=tmp_path / "data")
    yield made
    made.store.close()


def create(system: AutomationSystems, name: str, **options: Any) -> Any:
    return asyncio.run(
        system.create_task(
            name,
            ProcessType.MAINTENANCE,
            ScheduleType.DAILY,
            {"hour": 2},
            actions=[{"type": "cleanup", "params": {"older_than": "30days"}}],
            **options,
        )
    )


def update(system: AutomationSystems, which: str, **changes: Any) -> Any:
    return asyncio.run(system.update_task(which, **changes))


def links(system: AutomationSystems) -> dict[str, list[str]]:
    """Each task's name -> the names of the tasks that run after it (as the engine reads)."""
    tasks = asyncio.run(system.list_tasks())
    names = {t.id: t.name for t in tasks}
    return {t.name: sorted(names[i] for i in system.store.dependents(t.name)) for t in tasks}


def test_update_closing_a_loop_of_two_is_refused_and_changes_nothing(
    system: AutomationSystems,
) -> None:
    create(system, "A")
    create(system, "B", run_after={"task": "A"})
    before = asyncio.run(system.get_task("A"))

    with pytest.raises(InvalidInput) as refused:
        update(system, "A", run_after={"task": "B"})

    assert refused.value.field == "run_after.task"
    assert "'A' runs after 'B', 'B' runs after 'A'" in str(refused.value)
    assert asyncio.run(system.get_task("A")) == before
    assert links(system) == {"A": ["B"], "B": []}


def test_a_longer_loop_is_refused_and_a_chain_is_not(system: AutomationSystems) -> None:
    create(system, "A")
    create(system, "B", run_after={"task": "A"})
    create(system, "C", run_after={"task": "B"})
    create(system, "D")

    with pytest.raises(InvalidInput, match="'A' runs after 'C', 'C' runs after 'B'"):
        update(system, "A", run_after={"task": "C"})
    update(system, "D", run_after={"task": "C"})  # a chain that ends: accepted

    assert links(system) == {"A": ["B"], "B": ["C"], "C": ["D"], "D": []}


def test_a_rename_that_closes_a_loop_is_refused(system: AutomationSystems) -> None:
    # Y runs after a task named "X" that was deleted; W runs after Y
    create(system, "X")
    create(system, "Y", run_after={"task": "X"})
    asyncio.run(system.delete_task("X"))
    create(system, "W", run_after={"task": "Y"})

    # renaming W to "X" would make Y run after W, which runs after Y
    with pytest.raises(InvalidInput, match="'X' runs after 'Y', 'Y' runs after 'X'"):
        update(system, "W", name="X")
    # creating a new "X" after Y would close the same loop
    with pytest.raises(InvalidInput, match="'X' runs after 'Y', 'Y' runs after 'X'"):
        create(system, "X", run_after={"task": "Y"})

    assert [t.name for t in asyncio.run(system.list_tasks())] == ["W", "Y"]


def test_pause_resume_and_delete_work_after_the_allow_list_narrowed(
    tmp_path: Path, work: Path
) -> None:
    data = tmp_path / "data"
    allowed = [str(data), str(work)]
    made = AutomationSystems(data_dir=data, allowed_paths=allowed, shell_allow=["/bin/true"])
    asyncio.run(
        made.create_task(
            "ping",
            ProcessType.MAINTENANCE,
            ScheduleType.INTERVAL,
            {"every": "1h"},
            actions=[{"type": "shell", "params": {"argv": ["/bin/true"]}}],
        )
    )
    # the operator removes /bin/true from TDAUTO_SHELL_ALLOW: the task can no longer be
    # updated (its definition is refused) but must still be paused, resumed and deleted
    narrowed = AutomationSystems(data_dir=data, allowed_paths=allowed)
    refusal = r"^actions\.0\.params\.argv: the shell action is off: TDAUTO_SHELL_ALLOW is empty"
    with pytest.raises(InvalidInput, match=refusal):
        update(narrowed, "ping", description="edited")

    paused = asyncio.run(narrowed.pause_task("ping"))
    assert not paused.enabled and paused.next_run_at is None
    resumed = asyncio.run(narrowed.resume_task("ping"))
    assert resumed.enabled and resumed.next_run_at is not None
    asyncio.run(narrowed.delete_task("ping"))
    assert asyncio.run(narrowed.list_tasks()) == []
