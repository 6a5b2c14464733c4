"""Every metric the docs and the Grafana dashboard name is one the collector exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from tdauto.monitoring.metrics import StoreCollector
from tdauto.monitoring.rollups import record_final, record_fires, record_rebalance_decision
from tdauto.settings import Settings
from tdauto.store import FileStore
from tests.support.history import write_history

ROOT = Path(__file__).resolve().parents[2]
NAME = re.compile(r"\btdauto_[a-z_]+\b")
SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def base(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def exported(tmp_path: Path) -> set[str]:
    settings = Settings(data_dir=tmp_path / "data")
    store = FileStore(settings.data_path)
    write_history(store, 50)
    record_fires(store, [0.2, 0.4])
    record_rebalance_decision(store, {"class": "cpu", "action": "add_consumer"})
    store.put_sample("h1", "cpu", {"cpu_percent": 5.0, "concurrency": 2}, 60)
    store.reserve("h1", "x:0", {"cpu": 20.0})
    record_final(store, store.list_executions(limit=1)[0])
    registry = CollectorRegistry(auto_describe=False)
    collector = StoreCollector(
        store, settings, queue_depths=lambda: {"tdauto.cpu": 3}, restarts=lambda: {"cpu": 2}
    )
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {base(n) for n in NAME.findall(text)}


def test_docs_and_dashboard_name_only_exported_metrics(tmp_path: Path) -> None:
    names = exported(tmp_path)
    doc = (ROOT / "docs" / "process-monitoring.md").read_text()
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "tdauto-dashboard.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    documented = {base(n) for n in NAME.findall(doc)}
    used = {base(n) for n in NAME.findall(exprs)}
    assert documented - names == set()
    assert used - names == set()
    assert names - documented == set()  # every exported family has a line in the docs
