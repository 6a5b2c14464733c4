"""Issue #18 finding 10: one redaction policy for every printer and every record. Values of
secrets are hidden; the names of things (keys, headers, variables) are always shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from tdauto import AutomationSystems
from tdauto.actions.registry import REGISTRY, load_plugins
from tdauto.engine.executions import new_execution
from tdauto.engine.runner import run_action, start_execution
from tdauto.engine.runtime import Runtime
from tdauto.models import Task, Trigger
from tdauto.redact import redact, redact_text
from tdauto.settings import Settings
from tdauto.store.files import FileStore
from tests.support.cli import Sent, definition, run_cli, store_execution, store_task

SECRET_HEADERS = {
    "Api-Key": "k-api-1",
    "X-Api-Key": "k-xapi-2",
    "X-Signature": "k-sig-3",
    "X-Session": "k-sess-4",
    "Authorization": "Bearer k-auth-5",
}
SECRETS = [v.split()[-1] for v in SECRET_HEADERS.values()]
URL = "https://api.example.com/v1/items?access_token=k-query-6&page=2"


@pytest.fixture
def system(data: Path, monkeypatch: pytest.MonkeyPatch) -> AutomationSystems:
    monkeypatch.setenv("TDAUTO_TASK_SECRETS", "DEPLOY_*")  # headers_env may name DEPLOY_API_AUTH
    return AutomationSystems(data_dir=data)


def http_task(system: AutomationSystems) -> Task:
    params = {
        "url": URL,
        "headers": {**SECRET_HEADERS, "Accept": "application/json"},
        "headers_env": {"Authorization": "DEPLOY_API_AUTH"},
    }
    return store_task(system, "call-api", actions=[{"type": "http", "params": params}])


def assert_hidden(text: str) -> None:
    for secret in [*SECRETS, "k-query-6"]:
        assert secret not in text, f"{secret} shown in:\n{text}"


def test_task_show_hides_secret_headers_and_keeps_their_names(system, data) -> None:
    task = http_task(system)
    for args in (["task", "show", task.name], ["task", "show", task.name, "--json"]):
        result = run_cli(data, *args)
        assert result.exit_code == 0, result.output
        assert_hidden(result.output)
        for name in [*SECRET_HEADERS, "access_token"]:
            assert name in result.output
        # a value that is not secret, and the name of a variable, are shown
        assert "application/json" in result.output and "DEPLOY_API_AUTH" in result.output


def test_exec_show_json_hides_query_tokens_and_headers_in_params_output_and_error(
    system, data
) -> None:
    task = http_task(system)
    run = task.actions[0]
    execution = store_execution(
        system,
        task,
        params=run.params,
        error=f"GET {URL} failed; sent {{'X-Session': 'k-sess-4'}}",
    )
    for args in (["exec", "show", execution.id, "--json"], ["exec", "show", execution.id]):
        result = run_cli(data, *args)
        assert result.exit_code == 0, result.output
        assert_hidden(result.output)
    shown = json.loads(run_cli(data, "exec", "show", execution.id, "--json").output)
    params = shown["actions"][0]["params"]
    assert params["url"] == "https://api.example.com/v1/items?access_token=***&page=2"
    hidden = dict.fromkeys(SECRET_HEADERS, "***")
    assert params["headers"] == {**hidden, "Accept": "application/json"}


def test_actions_json_shows_the_schema_of_fields_that_name_a_variable(data) -> None:
    result = run_cli(data, "actions", "--json")
    assert result.exit_code == 0, result.output
    schemas = {row["name"]: row["params"]["properties"] for row in json.loads(result.output)}
    # password_env holds the NAME of a variable: its schema is not a secret
    assert schemas["backup"]["password_env"] != "***"
    assert "***" not in result.output


@pytest.mark.parametrize(
    "url", ["redis://:Pw-k-7@redis.example:6379/abc", "amqp://user:Pw-k-7@mq.example//"]
)
def test_a_refused_broker_url_is_reported_without_its_password(data, url) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(broker_url=url)
    assert "Pw-k-7" not in str(refused.value)

    result = run_cli(data, "task", "list", TDAUTO_BROKER_URL=url)
    assert result.exit_code == 2
    assert "Pw-k-7" not in result.output and "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: TDAUTO_BROKER_URL: ")
    assert "***" in lines[0] and "redis://" in lines[0]  # what was refused, and the fix


def test_the_policy_keeps_names_and_hides_values() -> None:
    assert redact({"password_env": "PGPASSWORD", "headers_env": {"X-Api-Key": "API_KEY"}}) == {
        "password_env": "PGPASSWORD",
        "headers_env": {"X-Api-Key": "API_KEY"},
    }
    assert redact({"secrets": {"db": "s3cr3t"}, "idempotency_key": "e:1"}) == {
        "secrets": {"db": "***"},
        "idempotency_key": "e:1",
    }
    assert redact_text("Authorization: Bearer abc.def rest") == "Authorization: *** rest"
    assert redact_text("curl https://h/x?sig=a1&access_token=a2&q=1") == (
        "curl https://h/x?sig=***&access_token=***&q=1"
    )
    assert redact_text("password_env=PGPASSWORD is not set") == "password_env=PGPASSWORD is not set"
    assert redact_text("private_key=k1 note: password=k2") == "private_key=*** note: password=***"


@pytest.fixture
def rt(tmp_path: Path) -> Runtime:
    load_plugins(["tests.integration.plugin_actions"])
    settings = Settings(data_dir=tmp_path / "data", allowed_paths=[tmp_path])
    return Runtime(settings, FileStore(settings.data_path), REGISTRY, Sent())


def _run_once(rt: Runtime, name: str, actions: list[dict[str, object]]) -> dict[str, object]:
    data = definition(name, actions=actions)
    task = Task.model_validate(data, context=rt.validation_context())
    rt.store.create_task(task, None)
    ex = new_execution(task, rt.registry, Trigger.MANUAL)
    rt.store.create_execution(ex)
    start_execution(rt, ex.id)
    run_action(rt, ex.id, 0)
    stored = rt.store.get_execution(ex.id)
    assert stored is not None
    return {**stored.model_dump(mode="json")["actions"][0], "log": rt.store.read_log(ex.id)}


def test_the_record_of_a_run_holds_no_secret_of_its_error_or_output(rt: Runtime) -> None:
    message = "login to redis://u:k-err-8@h with X-Api-Key: k-err-9"
    failed = _run_once(rt, "fails", [{"type": "fail", "params": {"message": message}}])
    assert failed["status"] == "FAILED"
    assert "k-err-8" not in failed["error"] and "k-err-9" not in failed["error"]
    assert "X-Api-Key: ***" in failed["error"]
    # the log keeps the error and its traceback, hidden the same way
    assert "X-Api-Key: ***" in failed["log"] and "k-err-9" not in failed["log"]

    argv = ["echo", "access_token=k-out-10"]
    done = _run_once(rt, "echoes", [{"type": "command", "params": {"argv": argv}}])
    assert done["status"] == "SUCCEEDED"
    assert "k-out-10" not in json.dumps(done["output"])
    assert "access_token=***" in done["output"]["output"]


def test_a_fix_that_names_tdauto_task_secrets_is_shown(tmp_path: Path) -> None:
    # its value is patterns of variable names: hiding it would hide the fix
    assert redact_text("allow it with TDAUTO_TASK_SECRETS=APP_*") == (
        "allow it with TDAUTO_TASK_SECRETS=APP_*"
    )
    path = tmp_path / "t.yaml"
    params = {"kind": "postgres", "dsn": "postgresql://db.example/app", "password_env": "APP_PW"}
    path.write_text(json.dumps(definition("db", actions=[{"type": "backup", "params": params}])))
    result = run_cli(tmp_path / "data", "task", "create", "-f", str(path))
    assert result.exit_code == 2
    assert "e.g. TDAUTO_TASK_SECRETS=APP_*" in result.output, result.output
