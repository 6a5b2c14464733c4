"""The monitoring actions: alert (webhook and SMTP, cooldown), trend, collect; retention."""

from __future__ import annotations

import http.server
import json
import random
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tdauto.actions.monitoring import trend_of
from tdauto.models import ExecutionStatus
from tdauto.monitoring import samples
from tdauto.monitoring.alerts import HISTORY
from tdauto.monitoring.notifiers import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from tdauto.monitoring.retention import run_retention
from tdauto.monitoring.rollups import buckets_at, record_final
from tdauto.settings import Settings
from tdauto.store import Store
from tdauto.store.backend import RollupDelta
from tests.support.actions import make_ctx, run
from tests.support.redis_server import free_port
from tests.unit.test_store import make_execution, make_task, store, store_factory  # noqa: F401

S = ExecutionStatus
SECRET = "webhook-signing-key"


class Receiver:
    """A local webhook receiver that checks each request's signature."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                ok = verify(
                    SECRET,
                    self.headers[TIMESTAMP_HEADER],
                    body,
                    self.headers[SIGNATURE_HEADER],
                )
                owner.received.append({"valid": ok, "alert": json.loads(body)})
                self.send_response(204 if ok else 401)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


def test_alert_reaches_webhook_and_smtp_once_within_cooldown(
    tmp_path: Path, receiver: Receiver, mailbox: tuple[Mailbox, int]
) -> None:
    box, port = mailbox
    settings = Settings(
        data_dir=tmp_path / "data",
        alert_webhook_secret=SECRET,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_security="none",
        smtp_from="tdauto@example.com",
    )
    ctx = make_ctx(settings)
    # Given a run that failed after its retries
    failed = make_execution(make_task("Nightly ETL"), 0, status=S.RUNNING)
    failed.created_at = datetime.now(UTC) - timedelta(minutes=3)
    ctx.store.create_execution(failed)
    ctx.store.update_execution(failed.id, lambda e: _fail(e))
    params = {
        "rules": [{"kind": "failed", "within": "15m", "name": "etl-failed"}],
        "notify": [
            {"type": "log"},
            {"type": "webhook", "url": receiver.url},
            {"type": "email", "to": ["ops@example.com"]},
        ],
        "cooldown": "1h",
    }
    # When the alert action runs twice
    first = run("alert", ctx, params)
    second = run("alert", ctx, params)
    # Then the first alert reached the webhook (signature valid) and the mailbox, once
    assert [a["delivered"] for a in first["sent"]] == [
        {"0:log": "ok", "1:webhook": "ok", "2:email": "ok"}
    ]
    assert len(receiver.received) == 1 and receiver.received[0]["valid"]
    assert receiver.received[0]["alert"]["details"]["execution_id"] == failed.id
    assert len(box.messages) == 1
    assert box.messages[0].rcpt_tos == ["ops@example.com"]
    assert "Nightly ETL FAILED" in box.messages[0].content.decode()
    # and the second, inside the cooldown, sent nothing
    assert second["sent"] == [] and second["suppressed"] == [f"etl-failed:{failed.id}"]
    assert len(ctx.store.history(HISTORY, None)) == 1


def _fail(e: Any) -> None:
    e.status = S.FAILED
    e.error = "action 0 (cleanup) failed: disk full"
    e.finished_at = datetime.now(UTC) - timedelta(minutes=1)


def test_a_tampered_webhook_body_fails_verification() -> None:
    from tdauto.monitoring.notifiers import sign

    ts = str(int(time.time()))
    signature = sign(SECRET, ts, b'{"a": 1}')
    assert verify(SECRET, ts, b'{"a": 1}', signature)
    assert not verify(SECRET, ts, b'{"a": 2}', signature)
    assert not verify("other", ts, b'{"a": 1}', signature)
    assert not verify(SECRET, str(int(time.time()) - 3600), b'{"a": 1}', signature)


def test_metric_and_stale_rules(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    ctx = make_ctx(settings)
    now = time.time()
    for i, value in enumerate((95.0, 96.0, 97.0)):
        ctx.store.append_history(
            samples.HISTORY, {"ts": now - 120 + i * 60, "host": "h1", "disk_percent": value}, 100
        )
    ctx.store.append_history(samples.HISTORY, {"ts": now, "host": "h2", "disk_percent": 50}, 100)
    task = make_task("Daily Backup", created_at=datetime.now(UTC) - timedelta(hours=1))
    ctx.store.create_task(task, None)

    out = run(
        "alert",
        ctx,
        {
            "rules": [
                {"kind": "metric", "metric": "disk_percent", "above": 90, "for": "5m"},
                {"kind": "stale", "task": "Daily Backup", "max_age": "1s"},
            ]
        },
    )

    assert sorted(a["key"] for a in out["sent"]) == ["metric:h1", "stale:Daily Backup"]


def test_trend_recovers_a_known_slope() -> None:
    rng = random.Random(3)
    now = 1_718_000_000.0
    start = now - 14 * 86400
    # disk fills 1.5 points a day from 40 %, sampled hourly with noise
    points = [(start + h * 3600, 40.0 + 1.5 * h / 24 + rng.gauss(0, 0.3)) for h in range(14 * 24)]

    result = trend_of(points, "disk_percent", None, now)

    line, when = result["fit"], result["forecast"]
    assert line["slope_per_day"] == pytest.approx(1.5, abs=0.02)
    assert line["r2"] > 0.99
    expected_now = 40.0 + 1.5 * 14
    assert when["days_until"] == pytest.approx((100 - expected_now) / 1.5, rel=0.03)
    assert trend_of(points[:2], "disk_percent", None, now)["fit"] is None


def test_trend_action_reads_collected_samples(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", host="h1")
    ctx = make_ctx(settings)
    now = time.time()
    for d in range(10):
        sample = {"ts": now - (9 - d) * 86400, "host": "h1", "disk_free_bytes": 1e9 - d * 5e7}
        ctx.store.append_history(samples.HISTORY, sample, 1000)

    out = run("trend", ctx, {"metric": "disk_free_bytes", "window": "30d"})

    assert out["fit"]["slope_per_day"] == pytest.approx(-5e7)
    assert out["forecast"]["days_until"] == pytest.approx(11.0, abs=0.01)


def test_collect_writes_the_store_and_a_day_file(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", host="h1")
    ctx = make_ctx(settings)

    out = run("collect", ctx, {})

    [stored] = ctx.store.history(samples.HISTORY, 10)
    assert stored["host"] == "h1" and 0 <= stored["disk_percent"] <= 100
    assert "queue_depth" in stored
    lines = Path(out["file"]).read_text().splitlines()
    assert json.loads(lines[-1])["ts"] == stored["ts"]


def test_retention_removes_exactly_what_is_older(store: Store, tmp_path: Path) -> None:  # noqa: F811
    settings = Settings(
        data_dir=tmp_path / "data",
        retention_executions_days=30,
        retention_logs_days=7,
        retention_metrics_days=60,
    )
    now = time.time()
    task = make_task()
    day = timedelta(days=1)
    base = datetime.fromtimestamp(now, UTC)
    # executions 31 and 29 days old (finished), 40 days old but still running, 8 and 6 days old
    ages = {"old": 31, "young": 29, "stuck": 40, "log_old": 8, "log_new": 6}
    made = {}
    for name, age in ages.items():
        status = S.RUNNING if name == "stuck" else S.SUCCEEDED
        ex = make_execution(task, 0, status=status, created_at=base - age * day)
        store.create_execution(ex)
        store.append_log(ex.id, f"{name}\n")
        made[name] = ex
    if hasattr(store, "root"):  # file store: a log's age is its file time
        import os

        for name, ex in made.items():
            path = Path(store.root) / "logs" / f"{ex.id}.log"
            os.utime(path, (now - ages[name] * 86400, now - ages[name] * 86400))
    for age in (61, 59):
        store.add_rollup(RollupDelta(buckets_at(now - age * 86400), incr={"n": 1}))
        store.append_history(samples.HISTORY, {"ts": now - age * 86400, "host": "h"}, 100)
    metrics = settings.data_path / "metrics"
    metrics.mkdir(parents=True, exist_ok=True)
    old_file = samples.day_file(metrics, now - 62 * 86400)
    new_file = samples.day_file(metrics, now - 58 * 86400)
    old_file.write_text("{}\n")
    new_file.write_text("{}\n")

    report = run_retention(store, settings, now)

    removed = report["removed"]
    assert report["execution_ids"] == [made["old"].id]
    assert removed["executions"] == 1
    assert store.get_execution(made["old"].id) is None
    assert store.get_execution(made["stuck"].id) is not None  # in flight: kept
    kept_logs = {n for n, ex in made.items() if store.read_log(ex.id)}
    assert kept_logs == {"log_new"}
    assert removed["logs"] == 3  # young, stuck, log_old (the old one went with its record)
    # the hour and day buckets of 61 days ago, and both minute buckets (kept two days)
    assert removed["rollup_buckets"] == 4
    young = [b.id for b in buckets_at(now - 59 * 86400) if b.tier in ("h", "d")]
    old = [b.id for b in buckets_at(now - 61 * 86400) if b.tier in ("h", "d")]
    assert store.read_rollups(young) == [{"n": 1.0}, {"n": 1.0}]
    assert store.read_rollups(old) == [{}, {}]
    assert removed["history_records"][samples.HISTORY] == 1
    assert [r["ts"] for r in store.history(samples.HISTORY, None)] == [now - 59 * 86400]
    assert removed["metrics_files"] == [old_file.name]
    assert new_file.exists() and not old_file.exists()
    assert store.read_rollups(["all"]) == [{"n": 2.0}]


def test_record_final_counts_a_missed_slot(tmp_path: Path) -> None:
    from tdauto.monitoring.stats import execution_stats

    settings = Settings(data_dir=tmp_path / "data")
    ctx = make_ctx(settings)
    missed = make_execution(make_task(), 0, status=S.MISSED, finished_at=datetime.now(UTC))
    record_final(ctx.store, missed)
    stats = execution_stats(ctx.store, settings=settings)
    assert stats["scheduler"]["missed"] == 1 and stats["by_status"] == {"MISSED": 1}
