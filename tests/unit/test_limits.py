"""Usage limits: an action's subprocesses run under rlimits from its reservation."""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

import pytest

from tdauto.actions.limits import MIN_ADDRESS_SPACE, Limits, limits_for
from tdauto.actions.process import ProcessGroup, run_command
from tdauto.actions.programs import ProgramList
from tdauto.actions.registry import REGISTRY, load_plugins
from tdauto.engine.executions import new_execution
from tdauto.errors import ActionError
from tdauto.models import Task, Trigger
from tdauto.settings import Settings
from tdauto.store.files import FileStore
from tests.support.actions import context, make_ctx

GIB = 2**30
SHOW_LIMIT = "import resource; print(resource.getrlimit(resource.RLIMIT_AS))"
PYTHON = ProgramList("python", None, "these tests", fixed=(sys.executable,))


def run(argv: list[str], limits: Limits | None, programs: ProgramList = PYTHON) -> str:
    return run_command(
        argv,
        programs=programs,
        logger=logging.getLogger("tdauto.test"),
        group=ProcessGroup(),
        stop=threading.Event(),
        timeout_s=60,
        limits=limits,
    ).output


def test_the_address_space_is_the_memory_share_of_the_host() -> None:
    assert limits_for(25.0, total_bytes=8 * GIB).address_space_bytes == 2 * GIB
    assert limits_for(1.0, total_bytes=8 * GIB).address_space_bytes == MIN_ADDRESS_SPACE
    assert limits_for(0.0, total_bytes=8 * GIB).empty  # claimed no memory: no limit


def test_a_command_runs_under_the_limit_and_cannot_raise_it() -> None:
    limit = 512 * 2**20
    out = run([sys.executable, "-c", SHOW_LIMIT], Limits(address_space_bytes=limit))
    assert out.strip() == f"({limit}, {limit})"


def test_a_command_that_maps_more_than_its_share_fails_instead_of_swapping() -> None:
    grab = "x = bytearray(1024 * 2**20); print('got it')"
    with pytest.raises(ActionError, match="MemoryError") as caught:
        run([sys.executable, "-c", grab], Limits(address_space_bytes=MIN_ADDRESS_SPACE))
    assert caught.value.kind == "exit"


def test_without_limits_nothing_is_wrapped() -> None:
    out = run([sys.executable, "-c", SHOW_LIMIT], None)
    assert "-1" in out or str(2**63) in out  # unlimited (RLIM_INFINITY)


def test_a_missing_program_is_reported_as_without_limits(tmp_path: Path) -> None:
    missing = ProgramList("missing", None, "this test", fixed=("no-such-program-tdauto",))
    gone = ProgramList("gone", None, "this test", fixed=(str(tmp_path / "nope"),))
    for limits in (None, Limits(address_space_bytes=GIB)):
        with pytest.raises(ActionError, match="'no-such-program-tdauto' is allowed by this test"):
            run(["no-such-program-tdauto"], limits, missing)
        with pytest.raises(ActionError, match="but not found"):
            run([str(tmp_path / "nope")], limits, gone)
        with pytest.raises(FileNotFoundError):  # the trampoline reports it as Popen does
            Limits(address_space_bytes=GIB).wrap([str(tmp_path / "nope")])


def _stored_execution(store: FileStore, settings: Settings, memory: float) -> str:
    load_plugins([])
    task = Task.model_validate(
        {
            "name": "limited",
            "type": "maintenance",
            "schedule": "daily",
            "schedule_config": {"hour": 2},
            "actions": [{"type": "cleanup", "params": {"older_than": "1d", "dry_run": True}}],
            "resources": {"memory": memory},
        },
        context=context(settings),
    )
    execution = new_execution(task, REGISTRY, Trigger.MANUAL)
    store.create_execution(execution)
    return execution.id


def test_ctx_run_applies_the_reservation_of_the_action(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    store = FileStore(settings.data_path)
    execution_id = _stored_execution(store, settings, memory=100.0)
    ctx = make_ctx(settings, store, execution_id)
    limit = ctx.usage_limits().address_space_bytes
    assert limit is not None and limit >= MIN_ADDRESS_SPACE
    out = ctx.run([sys.executable, "-c", SHOW_LIMIT], programs=PYTHON).output
    assert out.strip() == f"({limit}, {limit})"


def test_limits_can_be_turned_off(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", subprocess_limits=False)
    store = FileStore(settings.data_path)
    ctx = make_ctx(settings, store, _stored_execution(store, settings, memory=10.0))
    assert ctx.usage_limits().empty
