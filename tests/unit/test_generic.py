"""The generic actions (``shell``, ``http``) and the example plugin of ``examples/``.

``shell`` runs real programs (printf, printenv, pwd, sleep, false); ``http`` talks to a real
``http.server`` on a free local port in a thread; the plugin runs a whole execution through
the engine on one thread, as tests/unit/test_engine.py does.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tdauto.actions import REGISTRY, ActionContext, load_plugins
from tdauto.engine.runtime import Runtime
from tdauto.errors import ActionError
from tdauto.models import ExecutionStatus, Task
from tdauto.redact import redact_url
from tdauto.settings import Settings
from tdauto.store.files import FileStore
from tests.support import actions
from tests.support.actions import context, run
from tests.unit.test_dispatch import Recorder
from tests.unit.test_engine import drive, trigger

load_plugins([])

ALLOWED = ["printf", "printenv", "pwd", "sleep", "false"]
TOKEN = "s3cr3t-t0ken-value"


@pytest.fixture
def settings(tmp_path: Path, work: Path) -> Settings:
    data = tmp_path / "data"
    data.mkdir()
    return Settings(
        data_dir=data, allowed_paths=[data, work], shell_allow=ALLOWED, kill_grace_s=1,
        task_secrets=["APP_*"],
    )


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    logger = logging.getLogger("tdauto.test.generic")
    logger.setLevel(logging.INFO)
    handler = ListHandler()
    logger.addHandler(handler)
    yield handler.lines
    logger.removeHandler(handler)


store = actions.store  # the fixture: a FileStore on the settings fixture's data path


def make_ctx(settings: Settings, store: FileStore) -> ActionContext:
    return actions.make_ctx(settings, store, task_name="generic", logger="tdauto.test.generic")


def task_with(action_type: str, params: Any) -> dict[str, Any]:
    return {
        "name": "t",
        "type": "maintenance",
        "schedule": "daily",
        "schedule_config": {"hour": 1},
        "actions": [{"type": action_type, "params": params}],
    }


# --- shell ------------------------------------------------------------------------------------


def test_shell_is_off_unless_the_program_is_allowed(settings, store, tmp_path) -> None:
    off = Settings(data_dir=settings.data_dir, allowed_paths=[tmp_path])
    with pytest.raises(ValidationError, match="shell action is off: TDAUTO_SHELL_ALLOW is empty"):
        Task.model_validate(task_with("shell", {"argv": ["printf", "x"]}), context=context(off))
    with pytest.raises(ValidationError, match="program 'rm' is not allowed"):
        Task.model_validate(
            task_with("shell", {"argv": ["rm", "-rf", "x"]}), context=context(settings)
        )
    # the handler checks again with the worker's settings, whatever was validated elsewhere
    with pytest.raises(ActionError, match="shell action is off") as caught:
        REGISTRY.get("shell").handler(make_ctx(off, store), argv=["printf", "x"])
    assert caught.value.kind == "not_allowed"


def test_shell_refuses_a_string_argv(settings) -> None:
    with pytest.raises(ValidationError, match=r"argv\n.*argv must be a list such as") as caught:
        Task.model_validate(
            task_with("shell", {"argv": "printf hello; rm -rf /"}), context=context(settings)
        )
    assert "not a string" in str(caught.value)


def test_shell_passes_an_injection_attempt_literally(settings, store, work) -> None:
    canary = work / "pwned"
    args = [
        f"; touch {canary}",
        f"$(touch {canary})",
        f"`touch {canary}`",
        f"&& touch {canary} || rm -rf ~",
        f"| tee {canary}",
        "> /etc/passwd",
        "*",
        "$HOME",
    ]
    out = run("shell", make_ctx(settings, store), {"argv": ["printf", r"%s\n", *args]})
    assert out["exit_code"] == 0 and out["ok"] is True
    assert out["output"].split("\n") == args  # each one came back as one literal argument
    assert not canary.exists()


def test_shell_runs_an_allowed_program_with_cwd_and_env(settings, store, work) -> None:
    ctx = make_ctx(settings, store)
    out = run("shell", ctx, {"argv": ["printenv", "GREETING"], "env": {"GREETING": "hi there"}})
    assert out["output"] == "hi there" and out["program"].endswith("/printenv")
    assert run("shell", ctx, {"argv": ["pwd"], "cwd": str(work)})["output"] == str(work)
    assert run("shell", ctx, {"argv": ["pwd"]})["output"] == str(settings.data_path)
    (settings.data_path / "sub").mkdir()
    relative = run("shell", ctx, {"argv": ["pwd"], "cwd": "sub"})  # relative to the data dir
    assert relative["output"] == str(settings.data_path / "sub")
    clean = run("shell", ctx, {"argv": ["printenv"], "inherit_env": False, "env": {"A": "1"}})
    assert sorted(line.split("=")[0] for line in clean["output"].splitlines()) == [
        "A",
        "LANG",
        "PATH",
    ]


def test_shell_output_is_capped(settings, store) -> None:
    out = run(
        "shell", make_ctx(settings, store), {"argv": ["printf", "%0500d", "0"], "max_output": 100}
    )
    assert len(out["output"]) == 100 and out["output_truncated"] is True


def test_shell_fails_on_non_zero_exit_unless_allowed(settings, store) -> None:
    ctx = make_ctx(settings, store)
    with pytest.raises(ActionError, match="false exited with 1") as caught:
        run("shell", ctx, {"argv": ["false"]})
    assert caught.value.kind == "exit"
    out = run("shell", ctx, {"argv": ["false"], "allow_failure": True})
    assert out["exit_code"] == 1 and out["ok"] is False


def test_shell_timeout_stops_the_command(settings, store) -> None:
    started = time.monotonic()
    with pytest.raises(ActionError, match=r"timed out after 0\.5s") as caught:
        run("shell", make_ctx(settings, store), {"argv": ["sleep", "30"], "timeout": "0.5s"})
    assert caught.value.kind == "timeout"
    assert time.monotonic() - started < 10


def test_shell_program_cannot_be_swapped_through_path(settings, store, work) -> None:
    fake = work / "printf"
    fake.write_text(f"#!/bin/sh\ntouch {work / 'swapped'}\n")
    fake.chmod(0o755)
    out = run(
        "shell",
        make_ctx(settings, store),
        {"argv": ["printf", "real"], "env": {"PATH": str(work)}},
    )
    assert out["output"] == "real" and not (work / "swapped").exists()
    with pytest.raises(ValidationError, match="LD_PRELOAD is refused"):
        Task.model_validate(
            task_with("shell", {"argv": ["printf"], "env": {"LD_PRELOAD": str(fake)}}),
            context=context(settings),
        )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"argv": []}, "at least 1 item"),
        ({"argv": [""]}, "the program\\) is empty"),
        ({"argv": ["printf", 3]}, "Input should be a valid string"),
        ({"argv": ["printf", "a\0b"]}, "NUL"),
        ({"argv": ["printf"], "cwd": "/etc"}, "outside the allowed paths"),
        ({"argv": ["printf"], "env": {"BAD NAME": "x"}}, "not a valid variable name"),
        ({"argv": ["printf"], "timeout": "soon"}, "invalid duration"),
        ({"argv": ["printf"], "max_output": 10**9}, "less than or equal to"),
        ({"argv": ["printf"], "shell": True}, "Extra inputs are not permitted"),
        ({"command": "printf x"}, "argv\n  Field required"),
    ],
)
def test_bad_shell_params_fail_at_task_validation(settings, params, message) -> None:
    with pytest.raises(ValidationError, match=message):
        Task.model_validate(task_with("shell", params), context=context(settings))


# --- http -------------------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def _reply(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Set-Cookie", "session=abc123")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/json":
            self._reply(200, b'{"ok": true, "items": [1, 2]}')
        elif self.path == "/text":
            self._reply(200, b"hello", "text/plain; charset=utf-8")
        elif self.path.startswith("/status/"):
            self._reply(int(self.path.rsplit("/", 1)[1]), b'{"error": "nope"}')
        elif self.path == "/slow":
            time.sleep(3)
            self._reply(200, b"{}")
        elif self.path == "/big":
            self._reply(200, b"x" * 100_000, "text/plain")
        elif self.path == "/headers":
            self._reply(200, json.dumps({"seen": self.headers["Authorization"]}).encode())
        elif self.path in ("/hop-same", "/hop-other"):
            host = "127.0.0.1" if self.path == "/hop-same" else "localhost"
            self.send_response(302)
            self.send_header("Location", f"http://{host}:{self.server.server_address[1]}/headers")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/to-file":
            self.send_response(302)
            self.send_header("Location", "file:///etc/passwd")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._reply(404, b"{}")

    do_HEAD = do_GET

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        echo = {
            "body": json.loads(self.rfile.read(length)),
            "seen": self.headers.get("Authorization"),
            "content_type": self.headers.get("Content-Type"),
        }
        self._reply(201, json.dumps(echo).encode())


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_http_get_json(settings, store, server) -> None:
    out = run("http", make_ctx(settings, store), {"url": f"{server}/json"})
    assert out["status"] == 200 and out["json"] == {"ok": True, "items": [1, 2]}
    assert out["latency_ms"] > 0 and out["body_truncated"] is False
    assert out["headers"]["Set-Cookie"] == "***"
    text = run("http", make_ctx(settings, store), {"url": f"{server}/text"})
    assert text["body"] == "hello" and text["json"] is None
    head = run("http", make_ctx(settings, store), {"url": f"{server}/json", "method": "head"})
    assert head["status"] == 200 and head["body"] == ""


def test_http_post_json_with_a_secret_header_redacted(settings, store, server, log_lines) -> None:
    out = run(
        "http",
        make_ctx(settings, store),
        {
            "method": "POST",
            "url": f"{server}/echo?access_token={TOKEN}&page=2",
            "headers": {"Authorization": f"Bearer {TOKEN}", "X-Api-Key": TOKEN},
            "json": {"release": "1.4", "dry_run": False},
            "expected_status": 201,
        },
    )
    # the server got the real values ...
    assert out["json"]["body"] == {"release": "1.4", "dry_run": False}
    assert out["json"]["seen"] == f"Bearer {TOKEN}"
    assert out["json"]["content_type"] == "application/json"
    # ... the record and the log do not
    assert out["request_headers"]["Authorization"] == "***"
    assert out["request_headers"]["X-Api-Key"] == "***"
    assert "page=2" in out["url"] and TOKEN not in out["url"]
    assert log_lines and not any(TOKEN in line for line in log_lines)


def test_http_header_from_the_environment(settings, store, server, monkeypatch) -> None:
    monkeypatch.setenv("APP_TEST_AUTH", f"Bearer {TOKEN}")
    out = run(
        "http",
        make_ctx(settings, store),
        {
            "method": "POST",
            "url": f"{server}/echo",
            "headers_env": {"Authorization": "APP_TEST_AUTH", "X-Deploy": "APP_TEST_AUTH"},
            "json": {},
            "expected_status": 201,
        },
    )
    assert out["json"]["seen"] == f"Bearer {TOKEN}"  # the server got the value
    assert out["request_headers"]["Authorization"] == out["request_headers"]["X-Deploy"] == "***"
    monkeypatch.delenv("APP_TEST_AUTH")
    with pytest.raises(ActionError, match=r"APP_TEST_AUTH .* is not set on this worker"):
        run(
            "http",
            make_ctx(settings, store),
            {"url": server, "headers_env": {"X": "APP_TEST_AUTH"}},
        )


def test_http_unexpected_status_fails(settings, store, server) -> None:
    ctx = make_ctx(settings, store)
    with pytest.raises(ActionError, match=r"returned 503, expected 200-299") as caught:
        run("http", ctx, {"url": f"{server}/status/503"})
    assert caught.value.kind == "status"
    out = run("http", ctx, {"url": f"{server}/status/503", "expected_status": [500, 503]})
    assert out["status"] == 503 and out["json"] == {"error": "nope"}
    with pytest.raises(ActionError, match="returned 200, expected 204"):
        run("http", ctx, {"url": f"{server}/json", "expected_status": 204})


def test_http_timeout(settings, store, server) -> None:
    started = time.monotonic()
    with pytest.raises(ActionError, match=r"timed out after 0\.5s") as caught:
        run("http", make_ctx(settings, store), {"url": f"{server}/slow", "timeout": 0.5})
    assert caught.value.kind == "timeout" and time.monotonic() - started < 2.5


def test_http_connection_refused_and_redirect_to_file(settings, store, server) -> None:
    from tests.support.redis_server import free_port

    ctx = make_ctx(settings, store)
    with pytest.raises(ActionError, match="failed") as caught:
        run("http", ctx, {"url": f"http://127.0.0.1:{free_port()}/"})
    assert caught.value.kind == "connection"
    with pytest.raises(ActionError, match="refusing a redirect to file:///etc/passwd"):
        run("http", ctx, {"url": f"{server}/to-file"})


def test_http_redirect_keeps_credentials_with_their_host(
    settings, store, server, monkeypatch
) -> None:
    auth = {"headers": {"Authorization": f"Bearer {TOKEN}"}}
    same = run("http", make_ctx(settings, store), {"url": f"{server}/hop-same", **auth})
    assert same["json"] == {"seen": f"Bearer {TOKEN}"}
    other = run("http", make_ctx(settings, store), {"url": f"{server}/hop-other", **auth})
    assert other["status"] == 200 and other["json"] == {"seen": None}

    monkeypatch.setenv("APP_TEST_AUTH", f"Bearer {TOKEN}")
    env_auth = {"headers_env": {"Authorization": "APP_TEST_AUTH"}}
    other = run("http", make_ctx(settings, store), {"url": f"{server}/hop-other", **env_auth})
    assert other["json"] == {"seen": None}


def test_http_body_is_capped(settings, store, server) -> None:
    out = run("http", make_ctx(settings, store), {"url": f"{server}/big", "max_body": 1000})
    assert len(out["body"]) == 1000 and out["body_truncated"] is True


def test_redact_url() -> None:
    assert redact_url("https://u:pw@h/x?token=abc&q=1") == "https://u:***@h/x?token=***&q=1"
    assert redact_url("http://h/plain") == "http://h/plain"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "url\n  Field required"),
        ({"url": "ftp://example.com/x"}, "must be an http:// or https:// URL"),
        ({"url": "file:///etc/passwd"}, "must be an http:// or https:// URL"),
        ({"url": "http://"}, "with a host"),
        ({"url": "http://h/a b"}, "spaces or line breaks"),
        ({"url": "http://h/", "method": "BREW"}, "Input should be 'GET'"),
        ({"url": "http://h/", "json": {"a": 1}}, "a GET request has no body"),
        ({"url": "http://h/", "expected_status": 700}, "not HTTP statuses"),
        ({"url": "http://h/", "expected_status": []}, "expected_status is empty"),
        ({"url": "http://h/", "headers": {"Bad Header": "x"}}, "not a valid header name"),
        ({"url": "http://h/", "headers": {"X-A": "a\r\nX-B: b"}}, "line break"),
        ({"url": "http://h/", "headers_env": {"X-A": "not a var"}}, "not a valid variable"),
        ({"url": "http://h/", "timeout": "forever"}, "invalid duration"),
        ({"url": "http://h/", "body": "x"}, "Extra inputs are not permitted"),
    ],
)
def test_bad_http_params_fail_at_task_validation(settings, params, message) -> None:
    with pytest.raises(ValidationError, match=message):
        Task.model_validate(task_with("http", params), context=context(settings))


# --- the example plugin -----------------------------------------------------------------------


def test_example_plugin_registers_and_runs_through_the_engine(settings, store, work) -> None:
    assert load_plugins(["examples.plugin_example"]) == ["examples.plugin_example"]
    definition = REGISTRY.get("checksums")
    assert definition.resource_class.value == "storage"
    assert definition.description.startswith("Write a SHA-256 manifest")
    site = work / "site"
    site.mkdir()
    (site / "index.html").write_text("<h1>hi</h1>")
    (site / "notes.txt").write_text("skip me")
    rt = Runtime(settings, store, REGISTRY, Recorder())
    task = Task.model_validate(
        task_with("checksums", {"directory": str(site), "pattern": "*.html"}),
        context=rt.validation_context(),
    )
    store.create_task(task, None)

    ex = drive(rt, trigger(rt, task))

    assert ex.status is ExecutionStatus.SUCCEEDED, ex.error
    assert ex.actions[0].output == {
        "directory": str(site),
        "manifest": str(site / "SHA256SUMS"),
        "files": 1,
    }
    line = (site / "SHA256SUMS").read_text()
    assert line.endswith("  index.html\n") and len(line.split()[0]) == 64
    assert "wrote 1 checksums" in store.read_log(ex.id)
    with pytest.raises(ValidationError, match="outside the allowed paths"):
        Task.model_validate(
            task_with("checksums", {"directory": "/etc"}), context=rt.validation_context()
        )
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        Task.model_validate(
            task_with("checksums", {"directory": str(site), "patern": "*"}),
            context=rt.validation_context(),
        )


def test_cli_lists_the_generic_and_plugin_actions(tmp_path, monkeypatch) -> None:
    from click.testing import CliRunner

    from tdauto.cli import main

    monkeypatch.setenv("TDAUTO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TDAUTO_PLUGINS", "examples.plugin_example")
    result = CliRunner().invoke(main, ["actions", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert rows["shell"]["params"]["properties"]["argv"]["type"] == "array"
    assert "json" in rows["http"]["params"]["properties"]
    assert rows["checksums"]["process_type"] == "maintenance"
