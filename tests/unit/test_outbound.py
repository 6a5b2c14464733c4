"""Outbound requests cannot reach link-local or cloud metadata addresses (issue #18, 16).

A task's ``http`` action, its health checks (http, tcp, redis, postgres), ``verify`` checks
and the alert notifiers (webhook, SMTP) are refused 169.254.0.0/16, fe80::/10 and
fd00:ec2::254 unless ``TDAUTO_OUTBOUND_ALLOW`` lists them. Literal addresses are refused when
the task is created; names are resolved once, on the worker, and every address vetted before
any connection (a stub resolver stands in for DNS here, and every ``connect`` is recorded).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tdauto import AutomationSystems
from tdauto.actions import load_plugins
from tdauto.actions.pg_hosts import vetted
from tdauto.errors import ActionError, InvalidInput
from tdauto.monitoring import notifiers
from tdauto.outbound import OutboundRefused
from tdauto.settings import Settings
from tests.support.actions import make_ctx, run
from tests.support.outbound import METADATA, Connections, Resolver

load_plugins([])


def task(action_type: str, params: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "probe",
        "type": "maintenance",
        "schedule": "interval",
        "schedule_config": {"every": "1h"},
        "actions": [{"type": action_type, "params": params}],
    }


def checks(*items: dict[str, Any]) -> dict[str, Any]:
    return {"checks": list(items)}


REFUSED_AT_CREATE = [
    ("http", {"url": "http://169.254.169.254/latest/meta-data/"}),
    ("http", {"url": "http://[fd00:ec2::254]/latest/api/token"}),
    ("http", {"url": "http://[fe80::1%25eth0]:8080/"}),
    ("http", {"url": "http://2852039166/"}),  # 169.254.169.254 as one number
    ("http", {"url": "http://[::ffff:169.254.169.254]/"}),
    ("http", {"url": "http://[64:ff9b::a9fe:a9fe]/"}),  # the same through NAT64
    ("health_check", checks({"type": "http", "url": "http://169.254.169.254/"})),
    ("health_check", checks({"type": "tcp", "host": "169.254.169.254", "port": 80})),
    ("health_check", checks({"type": "redis", "url": "redis://169.254.1.1:6379/0"})),
    ("health_check", checks({"type": "postgres", "dsn": "postgresql://u@169.254.1.1/db"})),
    ("health_check", checks({"type": "postgres", "dsn": "host=db hostaddr=169.254.1.1 dbname=x"})),
    ("health_check", checks({"type": "postgres", "host": "fe80::2", "dbname": "x"})),
    ("verify", checks({"http": "http://169.254.169.254/"})),
    ("verify", checks({"tcp": "169.254.169.254:80"})),
    ("alert", {"notify": [{"type": "webhook", "url": "http://169.254.169.254/hook"}]}),
]


@pytest.mark.parametrize(("action_type", "params"), REFUSED_AT_CREATE)
def test_a_literal_metadata_address_is_refused_when_the_task_is_created(
    tmp_path: Path, action_type: str, params: dict[str, Any]
) -> None:
    system = AutomationSystems(data_dir=tmp_path / "data", alert_webhook_secret="k")
    with pytest.raises((ValidationError, ValueError)) as info:
        asyncio.run(system.create_task(**task(action_type, params)))
    message = str(info.value)
    assert "is a link-local or cloud metadata address" in message, message
    assert "TDAUTO_OUTBOUND_ALLOW" in message
    assert system.store.list_tasks() == []


def test_the_allow_list_lets_a_listed_network_through(tmp_path: Path) -> None:
    system = AutomationSystems(data_dir=tmp_path / "data", outbound_allow=["169.254.10.0/24"])
    allowed = task("http", {"url": "http://169.254.10.7/status"})
    assert asyncio.run(system.create_task(**allowed)).name == "probe"
    other = task("http", {"url": "http://169.254.169.254/"})
    with pytest.raises(InvalidInput, match=r"169\.254\.169\.254 is a link-local"):
        asyncio.run(system.create_task(**other))


def test_a_bad_allow_list_names_the_variable() -> None:
    with pytest.raises(ValidationError, match="TDAUTO_OUTBOUND_ALLOW: 'metadata' is not a network"):
        Settings(outbound_allow="10.0.0.0/8,metadata")


# --- names resolved on the worker --------------------------------------------------------------


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    data = tmp_path / "data"
    data.mkdir()
    return Settings(data_dir=data, alert_webhook_secret="k", smtp_host="mail.test")


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> Resolver:
    return Resolver(monkeypatch, {"metadata.test": [METADATA], "v6.test": ["fd00:ec2::254"]})


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> Connections:
    return Connections(monkeypatch)


def test_the_http_action_never_connects_to_a_name_that_resolves_to_metadata(
    settings: Settings, dns: Resolver, connections: Connections
) -> None:
    for url in ("http://metadata.test/latest/meta-data/", "https://v6.test/token"):
        with pytest.raises(ActionError, match=r"resolves to .* metadata address") as info:
            run("http", make_ctx(settings), {"url": url})
        assert info.value.kind == "not_allowed"
        assert "TDAUTO_OUTBOUND_ALLOW" in str(info.value)
    assert connections.addresses == []


def test_health_and_verify_checks_never_connect_to_metadata(
    settings: Settings, dns: Resolver, connections: Connections
) -> None:
    every = checks(
        {"type": "http", "url": "http://metadata.test/"},
        {"type": "tcp", "host": "metadata.test", "port": 80},
        {"type": "redis", "url": "redis://metadata.test:6379/0"},
        {"type": "postgres", "dsn": "postgresql://app@metadata.test/app"},
        {"type": "postgres", "host": "v6.test", "dbname": "app"},
    )
    with pytest.raises(ActionError, match="5 of 5 health checks failed") as info:
        run("health_check", make_ctx(settings), every)
    assert str(info.value).count(f"resolves to {METADATA}") == 4
    assert str(info.value).count("resolves to fd00:ec2::254") == 1
    probes = checks({"http": "http://metadata.test/"}, {"tcp": "metadata.test:80"})
    with pytest.raises(ActionError, match="failed 2 of 2 checks") as failed:
        run("verify", make_ctx(settings), probes)
    assert str(failed.value).count("is a link-local or cloud metadata address") == 2
    assert connections.addresses == []


def test_notifiers_never_connect_to_metadata(
    settings: Settings, dns: Resolver, connections: Connections
) -> None:
    alert = {"severity": "critical", "rule": "r", "summary": "s", "kind": "k", "at": 0, "key": "k"}
    with pytest.raises(OutboundRefused, match=r"metadata\.test resolves to 169\.254\.169\.254"):
        notifiers.send_webhook("http://metadata.test/hook", alert, settings, 5)
    smtp = settings.model_copy(update={"smtp_host": "metadata.test"})
    with pytest.raises(OutboundRefused, match=r"metadata\.test resolves to 169\.254\.169\.254"):
        notifiers.send_email(["ops@example.com"], alert, smtp, 5)
    assert connections.addresses == []


class _EchoHost(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = (self.headers.get("Host") or "").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[int]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHost)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield int(httpd.server_address[1])
    httpd.shutdown()
    httpd.server_close()


def test_a_name_is_resolved_once_and_the_vetted_address_is_the_one_connected_to(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, connections: Connections, server: int
) -> None:
    """DNS rebinding: the name answers 127.0.0.1 first and the metadata address after."""
    dns = Resolver(monkeypatch, {"rebind.test": ["127.0.0.1", METADATA]})
    out = run("http", make_ctx(settings), {"url": f"http://rebind.test:{server}/"})
    assert out["status"] == 200 and out["body"] == f"rebind.test:{server}"  # Host kept
    assert dns.calls == {"rebind.test": 1}
    assert connections.addresses == ["127.0.0.1"]


def test_postgres_programs_get_the_vetted_address_as_hostaddr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    Resolver(monkeypatch, {"db.test": ["127.0.0.1"], "rebind.test": ["127.0.0.1", METADATA]})
    assert vetted("postgresql://app@db.test:5432/app", []) == (
        "postgresql://app@db.test:5432/app?hostaddr=127.0.0.1"
    )
    assert vetted("host=db.test dbname=app", []) == "host=db.test dbname=app hostaddr=127.0.0.1"
    assert vetted("host=/run/postgresql dbname=app", []) == "host=/run/postgresql dbname=app"
    assert vetted("host=rebind.test dbname=app", []).endswith("hostaddr=127.0.0.1")
    with pytest.raises(OutboundRefused, match=r"rebind\.test resolves to 169\.254\.169\.254"):
        vetted("host=rebind.test dbname=app", [])  # the next lookup: refused, not passed on


def test_database_backups_never_connect_to_metadata(
    settings: Settings, dns: Resolver, connections: Connections
) -> None:
    """pg_dump and redis-cli get the vetted address (hostaddr=, -h), so a refused name never
    reaches them."""
    for params in (
        {"kind": "redis", "url": "redis://metadata.test:6379/0"},
        {"kind": "postgres", "dsn": "postgresql://app@metadata.test/app"},
    ):
        with pytest.raises(ActionError, match=r"metadata\.test resolves to 169\.254") as info:
            run("backup", make_ctx(settings), params)
        assert info.value.kind == "not_allowed"
    assert connections.addresses == []
