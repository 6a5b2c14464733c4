"""The ``update`` action: allow-listed argv commands, their exit codes and output recorded."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tdauto.actions import REGISTRY, ActionContext
from tdauto.actions.update import UpdateParams
from tdauto.errors import ActionError, InvalidInput
from tdauto.models import Task
from tdauto.settings import Settings
from tdauto.store.files import FileStore
from tests.support.actions import call, context, make_ctx


@pytest.fixture
def script(work: Path) -> Path:
    """An allowed absolute-path program: prints its args, a secret-looking line, 5000 numbered
    lines (~24 kB) and "done"."""
    path = work / "migrate.sh"
    path.write_text(
        "#!/bin/sh\n"
        'echo "args: $*"\n'
        'echo "connecting to postgresql://app:s3cr3t-pw@db/app"\n'
        "seq 1 5000\n"
        'echo "connecting to postgresql://app:s3cr3t-pw@db/app"\n'
        'echo "done"\n'
    )
    path.chmod(0o755)
    return path


@pytest.fixture
def settings(tmp_path: Path, work: Path, script: Path) -> Settings:
    data = tmp_path / "data"
    data.mkdir()
    return Settings(
        data_dir=data,
        allowed_paths=[data, work],
        update_allow=["echo", "false", "touch", "sleep", str(script)],
    )


def run(settings: Settings, params: dict[str, Any]) -> dict[str, Any]:
    model = UpdateParams.model_validate(params, context=context(settings))
    ctx = make_ctx(settings, task_name="update", action_type="update", logger="tdauto.test.update")
    return call("update", ctx, model)


def task(params: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "weekly-update",
        "type": "maintenance",
        "schedule": "weekly",
        "schedule_config": {"day_of_week": "sun", "hour": 4},
        "actions": [{"type": "update", "params": params}],
    }


def test_allowed_commands_run_and_their_results_are_recorded(settings, script, work):
    out = run(
        settings,
        {
            "commands": [
                ["echo", "hello; rm -rf / && $(reboot)"],  # one argument, never a shell
                [str(script), "--to", "v2"],
            ],
            "cwd": str(work),
            "max_output_bytes": 1000,
        },
    )
    first, second = out["commands"]
    assert (out["ok"], out["failed"]) == (True, 0)
    assert first == {
        "argv": ["echo", "hello; rm -rf / && $(reboot)"],
        "exit_code": 0,
        "duration_s": first["duration_s"],
        "output": "hello; rm -rf / && $(reboot)",
        "output_truncated": False,
    }
    assert second["exit_code"] == 0 and second["output_truncated"] is True
    assert len(second["output"].encode()) <= 1000 and second["output"].endswith("done")
    assert "postgresql://app:***@db/app" in second["output"]
    assert "s3cr3t-pw" not in json.dumps(out)


def test_the_first_failure_stops_the_run(settings, work):
    marker = work / "ran"
    with pytest.raises(ActionError, match=r"command 2 of 3 \(false\) exited with 1") as caught:
        run(settings, {"commands": [["echo", "one"], ["false"], ["touch", str(marker)]]})
    assert caught.value.kind == "exit"
    assert not marker.exists()


def test_continue_on_error_runs_everything_and_counts_failures(settings, work):
    marker = work / "ran"
    out = run(
        settings,
        {"commands": [["false"], ["touch", str(marker)]], "continue_on_error": True},
    )
    assert (out["ok"], out["failed"]) == (False, 1)
    assert [c["exit_code"] for c in out["commands"]] == [1, 0]
    assert marker.exists()


def test_a_command_over_its_timeout_is_stopped(settings):
    with pytest.raises(ActionError, match="timed out") as caught:
        run(settings, {"commands": [["sleep", "30"]], "timeout_s": "0.5s"})
    assert caught.value.kind == "timeout"


def test_a_program_not_allowed_is_refused_at_create_and_at_run_time(settings, tmp_path):
    with pytest.raises(ValidationError, match="program 'rm' is not allowed"):
        Task.model_validate(task({"commands": [["rm", "-rf", "/x"]]}), context=context(settings))
    # Allowed when the task was created, no longer when it runs: refused, nothing runs
    model = UpdateParams.model_validate({"commands": [["echo", "x"]]}, context=context(settings))
    stricter = Settings(data_dir=settings.data_dir, update_allow=["touch"])
    ctx = ActionContext(
        execution_id="e",
        task_id="t",
        task_name="n",
        index=0,
        action_type="update",
        attempt=1,
        settings=stricter,
        store=FileStore(settings.data_path),
        logger=logging.getLogger("tdauto.test.update"),
    )
    with pytest.raises(InvalidInput, match="program 'echo' is not allowed"):
        REGISTRY.get("update").handler(ctx, **model.model_dump())


def test_update_is_off_when_nothing_is_allowed(tmp_path):
    off = Settings(data_dir=tmp_path)
    with pytest.raises(ValidationError, match="update action is off: TDAUTO_UPDATE_ALLOW is empty"):
        Task.model_validate(task({"commands": [["echo", "x"]]}), context=context(off))


def test_the_allow_list_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TDAUTO_UPDATE_ALLOW", "apt-get, /usr/local/bin/migrate")
    assert Settings(data_dir=tmp_path).update_allow == ["apt-get", "/usr/local/bin/migrate"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"commands": ["apt-get update && reboot"]}, "never a shell string"),
        ({"commands": "apt-get update"}, "never a shell string"),
        ({"commands": [[]]}, "non-empty argv list"),
        ({"commands": []}, "at least 1 item"),
        ({"commands": [["./echo"]]}, "relative path"),
        ({"commands": [["/bin/sh", "-c", "echo x"]]}, "'/bin/sh' is not allowed"),
        ({"commands": [["/usr/../bin/echo", "x"]]}, "'..'"),
        ({"commands": [["echo", "a\0b"]]}, "NUL"),
        ({"commands": [["echo"]], "cwd": "/etc"}, "outside the allowed paths"),
        ({"commands": [["echo"]], "timeout_s": "soon"}, "invalid duration"),
        ({"commands": [["echo"]], "max_output_bytes": -1}, "greater than or equal to 0"),
        ({"commands": [["echo"]], "shell": True}, "Extra inputs"),
    ],
)
def test_bad_update_params_are_refused(settings, params, message):
    with pytest.raises(ValidationError, match=message):
        Task.model_validate(task(params), context=context(settings))


def test_a_missing_program_is_reported(settings, tmp_path):
    gone = tmp_path / "work" / "gone.sh"
    allowed = Settings(
        data_dir=settings.data_dir, allowed_paths=settings.allowed_paths, update_allow=[str(gone)]
    )
    with pytest.raises(ActionError, match="allowed by TDAUTO_UPDATE_ALLOW but not found"):
        run(allowed, {"commands": [[str(gone)]]})
    assert not os.path.exists(gone)
