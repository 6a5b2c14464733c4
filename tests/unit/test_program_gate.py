"""The one gate every program goes through (issue #18, finding 2).

``validate``'s ``check`` and ``verify``'s ``command`` ran any program, ``/bin/sh -c`` included,
with every allow-list empty. Now they run only what ``TDAUTO_CHECK_ALLOW`` lists, refused at
``create_task`` and again at run time; and every command (shell, update, tdauto's own tools)
passes the same rules: argv only, a name on PATH or an absolute path, no ``..``, no loader
variable added to its environment.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from tdauto import AutomationSystems, ProcessType, ScheduleType
from tdauto.actions import REGISTRY
from tdauto.actions.process import ProcessGroup, run_command
from tdauto.actions.programs import (
    CHECKS,
    SHELL,
    TOOLS,
    ProgramList,
    ProgramNotAllowed,
    program_path,
)
from tdauto.actions.registry import load_plugins
from tdauto.actions.releases import App
from tdauto.errors import ActionError, InvalidInput
from tdauto.settings import Settings
from tests.support.actions import call, make_ctx, run

load_plugins([])


@pytest.fixture
def off(tmp_path: Path, work: Path) -> Settings:
    """The defaults: every allow-list empty."""
    return Settings(data_dir=tmp_path / "data", allowed_paths=[tmp_path / "data", work])


@pytest.fixture
def allowing(off: Settings) -> Settings:
    return off.model_copy(update={"check_allow": ["tar", "test", "touch"]})


@pytest.fixture
def artifact(work: Path) -> Path:
    path = work / "site.tar"
    with_file = work / "VERSION"
    with_file.write_text("1.0")
    shutil.make_archive(str(work / "site"), "tar", root_dir=work, base_dir="VERSION")
    return path


@pytest.fixture
def app(work: Path) -> App:
    """An app whose ``current`` release has a VERSION file."""
    release = work / "app" / "releases" / "r1"
    release.mkdir(parents=True)
    (release / "VERSION").write_text("1.0")
    (work / "app" / "current").symlink_to("releases/r1")
    return App(work / "app")


def create(settings: Settings, actions: list[dict[str, Any]]) -> AutomationSystems:
    system = AutomationSystems(
        data_dir=settings.data_path,
        allowed_paths=[str(p) for p in settings.allowed_paths],
        check_allow=settings.check_allow,
    )
    asyncio.run(
        system.create_task(
            "release", ProcessType.DEPLOYMENT, ScheduleType.DAILY, {"hour": 3}, actions=actions
        )
    )
    return system


def validate_check(artifact: Path, argv: list[str]) -> dict[str, Any]:
    return {"type": "validate", "params": {"artifact": str(artifact), "check": argv}}


def verify_command(app: App, argv: list[str]) -> dict[str, Any]:
    return {"type": "verify", "params": {"app_dir": str(app.root), "checks": [{"command": argv}]}}


# --- validate's check and verify's command ---------------------------------------------------


def test_checks_are_refused_at_create_while_TDAUTO_CHECK_ALLOW_is_empty(off, artifact, app, work):
    marker = work / "ran"
    for spec in (
        validate_check(artifact, ["touch", str(marker)]),
        verify_command(app, ["touch", str(marker)]),
    ):
        with pytest.raises(InvalidInput) as caught:
            create(off, [spec])
        message = str(caught.value)
        assert "TDAUTO_CHECK_ALLOW is empty" in message, message
        assert "validate's check and verify's command checks are off" in message
        assert ("check" if spec["type"] == "validate" else "checks.0.command") in message
    system = AutomationSystems(data_dir=off.data_path)
    assert asyncio.run(system.list_tasks()) == []  # nothing was stored
    assert not marker.exists()


def test_a_shell_is_refused_when_only_other_programs_are_listed(allowing, artifact, app):
    for spec in (
        validate_check(artifact, ["/bin/sh", "-c", "touch /tmp/x"]),
        verify_command(app, ["sh", "-c", "touch /tmp/x"]),
    ):
        with pytest.raises(InvalidInput, match="is not allowed: TDAUTO_CHECK_ALLOW lists tar"):
            create(allowing, [spec])


def test_checks_are_refused_at_run_time_when_the_list_no_longer_has_them(
    off, allowing, artifact, app, work
):
    marker = work / "ran"
    ctx = make_ctx(off, action_type="validate")  # the worker's settings: the list is empty now
    model = REGISTRY.parse_params(
        "validate",
        {"artifact": str(artifact), "check": ["touch", str(marker)]},
        {"registry": REGISTRY, "settings": allowing},  # as created, when it was listed
    )
    with pytest.raises(ActionError, match="check: validate's check and verify's") as caught:
        call("validate", ctx, model)
    assert caught.value.kind == "not_allowed"
    params = {"app_dir": str(app.root), "checks": [{"command": ["touch", str(marker)]}]}
    verify = REGISTRY.parse_params("verify", params, {"registry": REGISTRY, "settings": allowing})
    with pytest.raises(ActionError, match=r"checks\.0\.command: .*TDAUTO_CHECK_ALLOW") as caught:
        call("verify", make_ctx(off), verify)
    assert caught.value.kind == "not_allowed"  # refused, not a failed check (no rollback)
    assert not marker.exists()


def test_listed_check_programs_run(allowing, artifact, app):
    ctx = make_ctx(allowing)
    out = run("validate", ctx, {"artifact": str(artifact), "check": ["tar", "-tf", "{artifact}"]})
    assert out["check"]["returncode"] == 0 and out["check"]["argv"][0] == "tar"
    checks = [{"command": ["test", "-s", "VERSION"]}]
    out = run("verify", ctx, {"app_dir": str(app.root), "checks": checks})
    assert out["checks"][0]["ok"] is True


def test_an_artifact_that_is_its_own_check_must_be_listed(off, work):
    tool = work / "installer"
    tool.write_text("#!/bin/sh\nexit 0\n")
    tool.chmod(0o755)
    spec = validate_check(tool, ["{artifact}", "--self-test"])
    with pytest.raises(InvalidInput, match=f"check: program '{tool}' is not allowed"):
        create(off.model_copy(update={"check_allow": ["tar"]}), [spec])
    listed = off.model_copy(update={"check_allow": [str(tool)]})
    create(listed, [spec])  # accepted: the artifact's path is listed
    out = run("validate", make_ctx(listed), spec["params"])
    assert out["check"]["argv"] == [str(tool), "--self-test"]


# --- the rules every list shares -------------------------------------------------------------


def test_names_and_paths_are_matched_as_the_same_file(work: Path) -> None:
    def path(program: str, allow: list[str]) -> str:
        return program_path(program, SHELL, Settings(data_dir=work, shell_allow=allow))

    printf = path("printf", ["printf"])
    assert os.path.isabs(printf)
    assert path(printf, ["printf"]) == printf  # the same file as the allowed name
    assert path("printf", [printf]) == printf
    script = work / "deploy.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert path(str(script), [str(script)]) == str(script)
    with pytest.raises(ProgramNotAllowed, match=r"TDAUTO_SHELL_ALLOW lists deploy\.sh"):
        path(str(script), ["deploy.sh"])  # a name means the one on PATH
    with pytest.raises(ProgramNotAllowed, match="allowed by TDAUTO_SHELL_ALLOW but not found"):
        path("no-such-tool-xyz", ["no-such-tool-xyz"])


def test_another_name_for_the_same_file_is_refused(work: Path) -> None:
    """On a busybox host ``ls`` and ``sh`` are one file: listing one must not admit the other."""
    multi = work / "multi"
    multi.write_text("#!/bin/sh\n")
    multi.chmod(0o755)
    (work / "ls").symlink_to(multi)
    (work / "sh").symlink_to(multi)
    settings = Settings(data_dir=work, shell_allow=[str(work / "ls")])
    assert program_path(str(work / "ls"), SHELL, settings) == str(work / "ls")
    with pytest.raises(ProgramNotAllowed, match=f"'{work / 'sh'}' is not allowed"):
        program_path(str(work / "sh"), SHELL, settings)


@pytest.mark.parametrize(
    ("program", "message"),
    [
        ("./deploy.sh", "is a relative path; give a name on PATH or an absolute path"),
        ("bin/deploy.sh", "is a relative path"),
        ("/usr/bin/../bin/sh", "has '..' in its path"),
        ("/opt/app/../../bin/sh", "has '..' in its path"),
    ],
)
def test_relative_paths_and_dot_dot_are_refused_even_when_listed(
    work: Path, program: str, message: str
) -> None:
    settings = Settings(data_dir=work, check_allow=[program])
    for resolve in (False, True):  # at create and at run time
        with pytest.raises(ProgramNotAllowed, match=message):
            program_path(program, CHECKS, settings, param="check", resolve=resolve)


def _run(argv: list[str], programs: ProgramList, settings: Settings | None, **kw: Any) -> str:
    return run_command(
        argv,
        programs=programs,
        settings=settings,
        logger=logging.getLogger("tdauto.test.gate"),
        group=ProcessGroup(),
        stop=threading.Event(),
        **kw,
    ).output


def test_a_loader_variable_added_to_the_environment_is_refused(work, monkeypatch):
    marker = work / "ran"
    settings = Settings(data_dir=work, shell_allow=["touch", "printenv"])
    for name in ("LD_PRELOAD", "LD_LIBRARY_PATH", "DYLD_INSERT_LIBRARIES", "GCONV_PATH"):
        env = dict(os.environ) | {name: str(work / "evil.so")}
        with pytest.raises(ActionError, match=f"env: {name} is refused") as caught:
            _run(["touch", str(marker)], SHELL, settings, env=env)
        assert caught.value.kind == "not_allowed"
    assert not marker.exists()
    # the worker's own loader settings are its operator's: passed on unchanged
    monkeypatch.setenv("LD_LIBRARY_PATH", str(work))
    out = _run(["printenv", "LD_LIBRARY_PATH"], SHELL, settings, env=dict(os.environ))
    assert out == str(work)


def test_tdauto_runs_only_its_own_tools_through_the_tools_list():
    pg_dump = program_path("pg_dump", TOOLS, None)
    assert os.path.isabs(pg_dump) and os.path.basename(pg_dump) == "pg_dump"
    refused = "'/bin/sh' is not allowed: tdauto's own tools lists pg_dump"
    with pytest.raises(ActionError, match=refused):
        _run(["/bin/sh", "-c", "true"], TOOLS, None)
