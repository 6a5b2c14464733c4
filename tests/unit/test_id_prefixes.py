"""The stores' id prefixes (``tdauto.store.ids``), the same on files and on Redis: only the
ids that begin with the prefix, the prefix's own glob characters taken literally."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tdauto.models import ActionRun, Execution, Task
from tdauto.store.backend import Store
from tdauto.store.files import FileStore
from tdauto.store.ids import unique_prefixes
from tdauto.store.redis import RedisStore


@pytest.fixture(params=["files", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made: Store
    if request.param == "redis":
        made = RedisStore(request.getfixturevalue("redis_server").url, prefix="ids")
    else:
        made = FileStore(tmp_path / "data")
    yield made
    made.close()


IDS = ["abcd1", "abcd2", "abce3", "ab*x4", "a/b?5"]


def _fill(store: Store) -> None:
    for n, task_id in enumerate(IDS):
        task = Task(
            id=task_id,
            name=f"t{n}",
            type="maintenance",
            schedule="daily",
            schedule_config={"hour": 2},
            actions=[{"type": "cleanup", "params": {"older_than": "30days"}}],
        )
        store.create_task(task, None)
        store.create_execution(
            Execution(
                id=task_id,
                task_id=task_id,
                task_name=task.name,
                actions=[ActionRun(index=0, type="cleanup")],
            )
        )


@pytest.mark.parametrize("kind", ["task", "execution"])
def test_only_the_ids_that_begin_with_the_prefix(store: Store, kind: str) -> None:
    _fill(store)
    starting = store.task_ids_starting if kind == "task" else store.execution_ids_starting
    assert sorted(starting("abcd", 10)) == ["abcd1", "abcd2"]
    assert sorted(starting("abc", 10)) == ["abcd1", "abcd2", "abce3"]
    assert starting("ab*", 10) == ["ab*x4"]  # not every id starting "ab"
    assert starting("a/b?", 10) == ["a/b?5"]
    assert starting("zzzz", 10) == []
    assert len(starting("ab", 2)) == 2


def test_unique_prefixes_are_the_shortest_starts_no_other_id_shares() -> None:
    ids = ["abcdef001", "abcdef002", "abcdff000", "ffffffff9"]
    assert unique_prefixes(ids, least=4) == {
        "abcdef001": "abcdef001",
        "abcdef002": "abcdef002",
        "abcdff000": "abcdf",
        "ffffffff9": "ffff",
    }
