"""``health_check`` against real things: a local HTTP server, open and closed ports, the disk,
a process, a private Redis and a private PostgreSQL."""

from __future__ import annotations

import json
import logging
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from pydantic import ValidationError

import tdauto.actions.builtin  # noqa: F401  (every built-in action, for the template)
from tdauto.actions import REGISTRY, ActionContext
from tdauto.actions.health import HealthCheckParams, parse_size
from tdauto.errors import ActionError
from tdauto.models import Task
from tdauto.settings import Settings
from tdauto.store.files import FileStore
from tests.support.actions import context, make_ctx
from tests.support.postgres_server import PostgresServer
from tests.support.redis_server import RedisServer, free_port

PW_ENV = "APP_TEST_HEALTH_PASSWORD"


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/slow":
            time.sleep(0.3)
        status = 503 if self.path == "/down" else 200
        body = b'{"status": "healthy", "version": "1.4.2"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass


@pytest.fixture(scope="module")
def web() -> Iterator[str]:
    """A local HTTP server in a thread: /ok, /slow (300 ms), /down (503); its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A process named ``sleep`` to look for."""
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    data = tmp_path / "data"
    data.mkdir()
    return Settings(data_dir=data, task_secrets=["APP_*", "PGPW_*"])


def run_checks(settings: Settings, checks: list[dict[str, Any]]) -> dict[str, Any]:
    model = HealthCheckParams.model_validate({"checks": checks}, context=context(settings))
    ctx = make_ctx(
        settings, task_name="health", action_type="health_check", logger="tdauto.test.health"
    )
    output = REGISTRY.get("health_check").handler(ctx, checks=model.checks)
    json.dumps(output)
    return output


def test_every_kind_of_check_passes_against_healthy_things(
    settings, web, sleeper, redis_server, postgres, monkeypatch
):
    redis.Redis(port=redis_server.port).config_set("requirepass", "redis-pw-1")
    monkeypatch.setenv(PW_ENV, "redis-pw-1")
    monkeypatch.setenv("PGPW_HEALTH", postgres.password)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    port = int(web.rsplit(":", 1)[1])

    out = run_checks(
        settings,
        [
            {"type": "http", "url": f"{web}/ok", "body_contains": "healthy",
             "body_regex": r'"version": "1\.\d+', "max_latency_ms": 2000},
            {"type": "http", "url": f"{web}/down", "expect_status": 503,
             "label": "down on purpose"},
            {"type": "tcp", "host": "127.0.0.1", "port": port},
            {"type": "disk", "min_free_percent": 0.001, "min_free_bytes": "1KB"},
            {"type": "process", "name": "sleep"},
            {"type": "redis", "url": redis_server.url, "password_env": PW_ENV},
            {"type": "postgres", "dsn": postgres.dsn(), "password_env": "PGPW_HEALTH"},
        ],
    )

    assert out["ok"] is True and out["failed"] == []
    by_type = {c["type"]: c for c in out["checks"]}
    assert [c["ok"] for c in out["checks"]] == [True] * 7
    assert all(c["latency_ms"] >= 0 and c["error"] is None for c in out["checks"])
    assert out["checks"][0]["status"] == 200 and out["checks"][1]["status"] == 503
    assert out["checks"][1]["name"] == "down on purpose"
    assert by_type["disk"]["free_bytes"] > 0 and 0 < by_type["disk"]["free_percent"] <= 100
    assert sleeper.pid in by_type["process"]["pids"]
    assert by_type["postgres"]["name"] == f"postgres {postgres.dsn()}"


def test_failures_are_all_reported_after_running_every_check(
    settings, web, redis_server, postgres, monkeypatch, caplog
):
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("PGPW_HEALTH", "wrong-Pg-password-9")
    closed = free_port()
    checks = [
        {"type": "http", "url": f"{web}/down"},
        {"type": "http", "url": f"{web}/ok", "body_contains": "degraded"},
        {"type": "http", "url": f"{web}/slow", "max_latency_ms": 100},
        {"type": "http", "url": f"http://127.0.0.1:{closed}/", "timeout_s": 2},
        {"type": "tcp", "host": "127.0.0.1", "port": closed, "timeout_s": 2},
        {"type": "disk", "min_free_bytes": "1000PB"},
        {"type": "process", "name": "no-such-process-xyz"},
        {"type": "redis", "url": f"redis://127.0.0.1:{closed}/0", "timeout_s": 2},
        {"type": "postgres", "dsn": postgres.dsn(), "password_env": "PGPW_HEALTH"},
        {"type": "redis", "url": redis_server.url, "label": "the good one"},
    ]

    with pytest.raises(ActionError) as caught:
        run_checks(settings, checks)

    error = str(caught.value)
    assert caught.value.kind == "health"
    assert error.startswith("9 of 10 health checks failed")
    for fragment in [
        "status 503, expected 200",
        "does not contain 'degraded'",
        "over 100 ms",
        "cannot reach",
        f"cannot connect to 127.0.0.1:{closed}",
        "bytes free, under 1000000000000000000",
        "0 processes named 'no-such-process-xyz'",
        "ConnectionError",
        "password authentication failed",
    ]:
        assert fragment in error
    assert "the good one" not in error
    assert "health the good one: ok" in caplog.text  # ran after the failures
    assert "wrong-Pg-password-9" not in error + caplog.text


def test_a_passing_check_output_is_recorded_per_check(settings, web):
    out = run_checks(settings, [{"type": "http", "url": f"{web}/slow"}])
    assert out["checks"][0]["latency_ms"] >= 300


@pytest.mark.parametrize(
    ("check", "message"),
    [
        ({"type": "smtp", "host": "x"}, "does not match any of the expected tags"),
        ({"type": "http"}, "url"),
        ({"type": "http", "url": "ftp://x"}, "http:// or https://"),
        ({"type": "https", "url": "http://x"}, "needs an https:// url"),
        ({"type": "http", "url": "http://x", "body_regex": "("}, "not a valid regex"),
        ({"type": "http", "url": "http://x", "expect_status": 42}, "greater than or equal"),
        ({"type": "http", "url": "http://x", "max_latency_ms": 0}, "greater than 0"),
        ({"type": "http", "url": "http://x", "timeout_s": 0}, "greater than 0"),
        ({"type": "http", "url": "http://x", "headers": {}}, "Extra inputs"),
        ({"type": "tcp", "host": "x", "port": 0}, "greater than or equal to 1"),
        ({"type": "tcp", "port": 80}, "host"),
        ({"type": "disk"}, "min_free_percent"),
        ({"type": "disk", "min_free_percent": 100}, "less than 100"),
        ({"type": "disk", "min_free_bytes": "lots"}, "invalid size"),
        ({"type": "disk", "path": "/etc", "min_free_percent": 5}, "outside the allowed paths"),
        ({"type": "process"}, "name"),
        ({"type": "redis", "url": "redis://:hunter2@h:6379"}, "carries a password"),
        ({"type": "postgres", "dsn": "postgresql://u:hunter2@h/db"}, "carries a password"),
        ({"type": "postgres", "host": "h"}, "name the database"),
    ],
)
def test_bad_checks_are_refused_at_create_time(settings, check, message):
    definition = {
        "name": "health",
        "type": "maintenance",
        "schedule": "interval",
        "schedule_config": {"every": "5m"},
        "actions": [{"type": "health_check", "params": {"checks": [check]}}],
    }
    with pytest.raises(ValidationError, match=message):
        Task.model_validate(definition, context=context(settings))
    with pytest.raises(ValidationError) as caught:
        HealthCheckParams.model_validate({"checks": [check]}, context=context(settings))
    assert "hunter2" not in str(caught.value)


def test_checks_must_not_be_empty(settings):
    with pytest.raises(ValidationError, match="at least 1 item"):
        HealthCheckParams.model_validate({"checks": []}, context=context(settings))
    with pytest.raises(ValidationError, match="Extra inputs"):
        HealthCheckParams.model_validate({"checks": [], "fail_fast": True})


def test_sizes():
    assert parse_size("10GB") == 10_000_000_000
    assert parse_size("512MiB") == 512 * 1024**2
    assert parse_size("2048") == 2048
    with pytest.raises(ValueError, match="invalid size"):
        parse_size("ten")


def test_a_closed_redis_and_a_live_one(settings, redis_server: RedisServer):
    out = run_checks(settings, [{"type": "redis", "url": redis_server.url}])
    assert out["checks"][0]["ok"]
    redis_server.stop()
    with pytest.raises(ActionError, match="1 of 1 health checks failed"):
        run_checks(settings, [{"type": "redis", "url": redis_server.url, "timeout_s": 1}])


# --- the template -------------------------------------------------------------------------------

TEMPLATE = Path(__file__).resolve().parents[2] / "examples" / "maintenance.yaml"


def test_the_maintenance_template_is_accepted_and_its_nightly_task_runs(settings):
    items = yaml.safe_load(TEMPLATE.read_text())
    tasks = [Task.model_validate(item, context=context(settings)) for item in items]
    assert [t.name for t in tasks] == ["nightly-maintenance", "nightly-databases"]
    assert [t.enabled for t in tasks] == [True, False]
    types = [a.type for a in tasks[1].actions]
    assert types == ["backup", "backup", "health_check"]

    # The first task's actions run here as they are, in order, as the engine runs them.
    store = FileStore(settings.data_path)
    outputs = []
    for spec in tasks[0].actions:
        model = REGISTRY.parse_params(spec.type, spec.params, context(settings))
        ctx = ActionContext(
            execution_id="nightly-1",
            task_id=tasks[0].id,
            task_name=tasks[0].name,
            index=len(outputs),
            action_type=spec.type,
            attempt=1,
            settings=settings,
            store=store,
            logger=logging.getLogger("tdauto.test.template"),
        )
        kwargs = {name: getattr(model, name) for name in type(model).model_fields}
        outputs.append(REGISTRY.get(spec.type).handler(ctx, **kwargs))
    assert outputs[0]["kind"] == "store" and Path(outputs[0]["path"]).is_file()
    assert outputs[1]["dry_run"] is False
    assert outputs[2]["checks"][0]["name"] == "data dir disk"
