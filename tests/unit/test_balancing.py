"""Routing weights, the router's choices and fallbacks, and the resource manager's decisions
(with a fake broker and the file store; no services)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from beat_schedule import MANAGER_ENTRY, beat_schedule
from tdauto.actions.registry import REGISTRY, load_plugins
from tdauto.engine.runtime import Runtime
from tdauto.resources import manager
from tdauto.resources.pools import load_pool
from tdauto.resources.router import Router, is_stale, routed_sender
from tdauto.resources.weights import FORGET_S, compute_weights, weights_record
from tdauto.settings import Settings
from tdauto.store.files import FileStore
from tests.unit.test_dispatch import Recorder

NOW = 1_700_000_000.0


def sample(host: str, pool: str = "cpu", active: int = 0, concurrency: int = 2, **load: Any):
    return {
        "host": host,
        "pool": pool,
        "cpu_percent": load.get("cpu", 10.0),
        "memory_percent": load.get("memory", 30.0),
        "disk_percent": load.get("disk", 40.0),
        "load_per_core": 0.1,
        "pool_cpu_percent": 1.0,
        "pool_rss_bytes": 50 * 2**20,
        "concurrency": concurrency,
        "active": active,
    }


# --- weights ---------------------------------------------------------------------------------


def test_an_idle_host_weighs_its_free_share_times_its_free_slots() -> None:
    table = compute_weights([sample("a", cpu=20.0)], [], {}, None, NOW, 90.0)
    entry = table["cpu"]["a"]
    assert entry["weight"] == 80.0 * 2
    assert (entry["free_percent"], entry["slots"], entry["reason"]) == (80.0, 2, None)
    assert table["memory"] == {} and table["storage"] == {}


def test_reservations_count_when_they_exceed_the_measured_load() -> None:
    held = [{"host": "a", "cpu": 60.0, "memory": 0.0, "storage": 0.0}]
    table = compute_weights([sample("a", cpu=10.0), sample("b", cpu=10.0)], held, {}, None, NOW, 90)
    assert table["cpu"]["a"]["weight"] == 40.0 * 2
    assert table["cpu"]["b"]["weight"] == 90.0 * 2


@pytest.mark.parametrize(
    ("pool", "load", "held"),
    [
        ("cpu", {"cpu": 95.0}, 0.0),  # measured above the mark
        ("memory", {"memory": 91.0}, 0.0),
        ("storage", {"disk": 90.0}, 0.0),  # at the mark counts
        ("cpu", {"cpu": 5.0}, 92.0),  # reserved above the mark
    ],
)
def test_a_host_at_or_above_the_high_water_mark_weighs_nothing(
    pool: str, load: dict[str, float], held: float
) -> None:
    reservations = [{"host": "a", "cpu": held, "memory": 0.0, "storage": 0.0}]
    table = compute_weights([sample("a", pool, **load)], reservations, {}, None, NOW, 90.0)
    entry = table[pool]["a"]
    assert entry["weight"] == 0
    assert "high-water" in entry["reason"]


def test_busy_slots_and_messages_already_queued_for_the_host_take_its_slots() -> None:
    samples = [sample("a", active=1, concurrency=2), sample("b", active=2, concurrency=2)]
    depths = {"tdauto.cpu.a": 1}
    table = compute_weights(samples, [], depths, None, NOW, 90.0)
    assert table["cpu"]["a"]["weight"] == 0
    assert "1 queued here" in table["cpu"]["a"]["reason"]
    assert table["cpu"]["b"]["weight"] == 0
    assert "2/2 busy" in table["cpu"]["b"]["reason"]


def test_a_host_whose_samples_expired_keeps_weight_zero_until_forgotten() -> None:
    first = weights_record(compute_weights([sample("a")], [], {}, None, NOW, 90), 1, NOW, 3.0)
    later = compute_weights([], [], {}, first, NOW + 30, 90.0)
    entry = later["cpu"]["a"]
    assert entry["weight"] == 0 and entry["live"] is False
    assert "no fresh load sample" in entry["reason"]
    record = weights_record(later, 2, NOW + 30, 3.0)
    assert "a" not in compute_weights([], [], {}, record, NOW + FORGET_S + 1, 90)["cpu"]


def test_weight_decisions_are_recorded_when_a_host_crosses_zero_or_appears() -> None:
    before = weights_record(
        compute_weights([sample("a"), sample("b")], [], {}, None, NOW, 90), 1, NOW, 3.0
    )
    after = compute_weights(
        [sample("a", active=2), sample("b"), sample("c")], [], {}, before, NOW, 90
    )
    changes = {
        (d["host"], d["weight_from"], d["weight_to"]) for d in manager.weight_changes(before, after)
    }
    assert changes == {("a", 180.0, 0.0), ("c", None, 180.0)}


# --- router ----------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


class CountingStore(FileStore):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reads = 0
        self.fail = False

    def weights(self) -> dict[str, Any] | None:
        self.reads += 1
        if self.fail:
            raise OSError("store down")
        return super().weights()


@pytest.fixture
def store(tmp_path: Path) -> CountingStore:
    return CountingStore(tmp_path / "data")


def put(store: FileStore, tick: int, at: float, cpu: dict[str, tuple[float, int]]) -> None:
    classes = {
        "cpu": {h: {"weight": w, "slots": s} for h, (w, s) in cpu.items()},
        "memory": {},
        "storage": {},
    }
    store.put_weights({"tick": tick, "at": at, "interval_s": 1.0, "classes": classes})


def test_without_weights_the_router_uses_the_shared_queue(store: CountingStore) -> None:
    router = Router(store, clock=Clock())
    assert router.queue("cpu") == "tdauto.cpu"


def test_the_router_follows_the_weights_and_spends_one_slot_per_pick(store: CountingStore) -> None:
    put(store, 1, NOW, {"a": (300.0, 3), "b": (100.0, 1), "z": (0.0, 2)})
    router = Router(store, clock=Clock())
    picks = [router.queue("cpu") for _ in range(6)]
    assert sorted(picks[:4]) == ["tdauto.cpu.a"] * 3 + ["tdauto.cpu.b"]
    assert picks[4:] == ["tdauto.cpu", "tdauto.cpu"]  # slots spent: the shared queue
    assert router.queue("memory") == "tdauto.memory"


def test_slots_come_back_with_a_new_tick_not_with_a_reread(store: CountingStore) -> None:
    clock = Clock()
    put(store, 1, NOW, {"a": (100.0, 1)})
    router = Router(store, clock=clock)
    assert router.queue("cpu") == "tdauto.cpu.a"
    clock.now += 1.5  # re-read, same tick
    assert router.queue("cpu") == "tdauto.cpu"
    put(store, 2, clock.now, {"a": (100.0, 1)})
    clock.now += 1.5
    assert router.queue("cpu") == "tdauto.cpu.a"


def test_the_store_is_read_at_most_once_a_second(store: CountingStore) -> None:
    clock = Clock()
    put(store, 1, NOW, {"a": (100.0, 1000)})
    router = Router(store, clock=clock)
    for _ in range(500):
        router.queue("cpu")
        clock.now += 0.01
    assert store.reads == 5


def test_stale_weights_and_an_unreadable_store_fall_back_to_the_shared_queue(
    store: CountingStore,
) -> None:
    clock = Clock()
    put(store, 1, NOW, {"a": (100.0, 1000)})
    router = Router(store, clock=clock)
    assert router.queue("cpu") == "tdauto.cpu.a"
    store.fail = True
    clock.now += 2
    assert router.queue("cpu") == "tdauto.cpu.a"  # cached record, still fresh
    clock.now += 10  # the manager stopped writing: the record went stale
    assert is_stale({"at": NOW, "interval_s": 1.0}, clock.now)
    assert not is_stale({"at": NOW, "interval_s": 1.0}, NOW + 4)
    assert router.queue("cpu") == "tdauto.cpu"


def test_the_routed_sender_reroutes_actions_for_a_shared_queue_only(store: CountingStore) -> None:
    put(store, 1, NOW, {"a": (100.0, 10)})
    sent = Recorder()
    send = routed_sender(sent, Router(store, clock=Clock()))
    send("tdauto.action.sleep", ["e", 0], "tdauto.cpu", 5)
    send("tdauto.action.sleep", ["e", 1], "tdauto.cpu.b", 5)  # passed on by admission: kept
    send("tdauto.run", ["e"], "tdauto.control", 5)
    assert [m[2] for m in sent.sent] == ["tdauto.cpu.a", "tdauto.cpu.b", "tdauto.control"]


def test_as_a_celery_router_it_routes_actions_by_their_default_class(
    store: CountingStore,
) -> None:
    put(store, 1, NOW, {"a": (100.0, 10)})
    router = Router(store, clock=Clock(), class_of=lambda t: "cpu" if t == "sleep" else None)
    assert router("tdauto.action.sleep", [], {}, {}) == {
        "queue": "tdauto.cpu.a",
        "routing_key": "tdauto.cpu.a",
    }
    assert router("tdauto.action.unknown", [], {}, {}) is None
    assert router("tdauto.run", [], {}, {}) is None


# --- manager ---------------------------------------------------------------------------------


class FakeBroker:
    def __init__(self) -> None:
        self.queued: dict[str, int] = {}
        self.calls: list[tuple[str, str, str]] = []
        self.refuse: set[str] = set()

    def depths(self, queues: list[str]) -> dict[str, int]:
        return {q: self.queued.get(q, 0) for q in queues}

    def add_consumer(self, node: str, queue: str) -> bool:
        self.calls.append(("add", node, queue))
        return node not in self.refuse

    def cancel_consumer(self, node: str, queue: str) -> bool:
        self.calls.append(("cancel", node, queue))
        return True

    def move_messages(self, source: str, target: str) -> int:
        moved = self.queued.pop(source, 0)
        self.queued[target] = self.queued.get(target, 0) + moved
        return moved


@pytest.fixture
def rt(tmp_path: Path) -> Runtime:
    load_plugins([])
    settings = Settings(data_dir=tmp_path / "data", host="here", spill_backlog=3)
    return Runtime(settings, FileStore(settings.data_path), REGISTRY, Recorder())


def publish(rt: Runtime, *samples: dict[str, Any]) -> None:
    for s in samples:
        rt.store.put_sample(s["host"], s["pool"], s, 10.0)


def test_a_tick_writes_weights_and_counts_ticks(rt: Runtime) -> None:
    publish(rt, sample("a"), sample("b", active=2))
    first = manager.tick(rt, FakeBroker())
    second = manager.tick(rt, FakeBroker())
    assert (first["tick"], second["tick"]) == (1, 2)
    record = rt.store.weights()
    assert record is not None and record["tick"] == 2
    assert record["classes"]["cpu"]["a"]["weight"] > 0
    assert record["classes"]["cpu"]["b"]["weight"] == 0
    decided = {(d["kind"], d["host"], d["weight_to"] > 0) for d in rt.store.decisions(10)}
    assert decided == {("weight", "a", True), ("weight", "b", False)}  # second tick: no change


def test_a_backlog_gets_idle_pools_of_other_classes_until_it_drains(rt: Runtime) -> None:
    broker = FakeBroker()
    publish(
        rt,
        sample("a", "cpu", active=2),
        sample("a", "storage", concurrency=4),
        sample("b", "memory", concurrency=1),
        sample("b", "storage", active=1, concurrency=4),  # busy: not lent
    )
    broker.queued = {"tdauto.cpu": 4}
    report = manager.tick(rt, broker)
    lent = [d for d in report["decisions"] if d["kind"] == "add_consumer"]
    assert [(d["node"], d["queues"], d["ok"]) for d in lent] == [
        ("storage@a", ["tdauto.cpu", "tdauto.cpu.a"], True)
    ]  # four slots cover a backlog of four: the memory pool stays home
    assert set(rt.store.spills()) == {"storage@a"}

    broker.queued = {"tdauto.cpu": 9}
    report = manager.tick(rt, broker)
    assert [d["node"] for d in report["decisions"] if d["kind"] == "add_consumer"] == ["memory@b"]

    broker.calls.clear()
    broker.queued = {}
    report = manager.tick(rt, broker)
    taken_back = {d["node"] for d in report["decisions"] if d["kind"] == "cancel_consumer"}
    assert taken_back == {"storage@a", "memory@b"}
    assert ("cancel", "storage@a", "tdauto.cpu") in broker.calls
    assert rt.store.spills() == {}


def test_a_lent_pool_goes_home_when_its_own_class_has_work(rt: Runtime) -> None:
    broker = FakeBroker()
    publish(rt, sample("a", "cpu", active=2), sample("a", "storage", concurrency=4))
    broker.queued = {"tdauto.cpu": 5}
    manager.tick(rt, broker)
    broker.queued = {"tdauto.cpu": 5, "tdauto.storage": 1}
    report = manager.tick(rt, broker)
    (back,) = [d for d in report["decisions"] if d["kind"] == "cancel_consumer"]
    assert "its own class storage" in back["detail"]


def test_a_refused_loan_is_recorded_as_failed_and_not_kept(rt: Runtime) -> None:
    broker = FakeBroker()
    broker.refuse = {"storage@a"}
    publish(rt, sample("a", "cpu", active=2), sample("a", "storage"))
    broker.queued = {"tdauto.cpu": 5}
    report = manager.tick(rt, broker)
    (loan,) = [d for d in report["decisions"] if d["kind"] == "add_consumer"]
    assert loan["ok"] is False
    assert rt.store.spills() == {}


def test_a_dead_host_loses_weight_its_queue_is_rescued_and_its_loans_forgotten(
    rt: Runtime,
) -> None:
    broker = FakeBroker()
    publish(rt, sample("a", "cpu", active=2), sample("b", "storage"), sample("b", "cpu"))
    broker.queued = {"tdauto.cpu": 5}
    manager.tick(rt, broker)
    assert "storage@b" in rt.store.spills()
    # host b dies: its samples expire; two messages were routed to it meanwhile
    rt.store.put_sample("b", "cpu", sample("b"), -1.0)
    rt.store.put_sample("b", "storage", sample("b", "storage"), -1.0)
    broker.queued = {"tdauto.cpu": 5, "tdauto.cpu.b": 2}
    report = manager.tick(rt, broker)
    assert report["weights"]["cpu"]["b"] == 0
    kinds = {d["kind"]: d for d in report["decisions"]}
    assert kinds["rescue"]["count"] == 2 and broker.queued["tdauto.cpu"] == 7
    assert kinds["cancel_consumer"]["detail"] == "its worker is gone"
    assert ("cancel", "storage@b", "tdauto.cpu") not in broker.calls
    assert kinds["weight"]["weight_to"] == 0 and kinds["weight"]["host"] == "b"


def test_reservations_of_a_dead_host_are_released_by_the_tick(rt: Runtime) -> None:
    assert rt.store.reserve("gone", "exec-x:0", {"cpu": 50.0})
    report = manager.tick(rt, FakeBroker())
    assert rt.store.reservations() == {}
    assert [d["count"] for d in report["decisions"] if d["kind"] == "release"] == [1]


def test_ticks_never_overlap_and_an_abandoned_turn_lapses(rt: Runtime) -> None:
    now = time.time()
    assert manager.take_turn(rt, now)
    assert not manager.take_turn(rt, now + 1)
    assert manager.tick(rt, FakeBroker()) == {"skipped": "another resource-manager tick is running"}
    assert manager.take_turn(rt, now + manager.TURN_TTL_S + 1)


def test_decisions_are_bounded_and_newest_first(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "d")
    store.add_decisions([{"kind": "x", "n": i} for i in range(5)], keep=3)
    store.add_decisions([{"kind": "x", "n": 5}], keep=3)
    assert [d["n"] for d in store.decisions(10)] == [5, 4, 3]
    assert [d["n"] for d in store.decisions(1)] == [5]


def test_the_manager_beat_entry_takes_its_interval_from_the_settings(tmp_path: Path) -> None:
    schedule = beat_schedule(Settings(data_dir=tmp_path, manager_interval_s=1.5))
    assert schedule[MANAGER_ENTRY]["schedule"] == 1.5
    assert schedule[MANAGER_ENTRY]["options"]["expires"] < 1.5
    assert schedule[MANAGER_ENTRY]["task"] == manager.BALANCE_TASK


def test_the_memory_pool_recycles_children_above_the_configured_limit(tmp_path: Path) -> None:
    argv = load_pool("memory").worker_argv(Settings(data_dir=tmp_path, memory_child_max_mb=300))
    assert argv[argv.index("--max-memory-per-child") + 1] == str(300 * 1024)
    assert "--max-memory-per-child" not in load_pool("cpu").worker_argv(Settings(data_dir=tmp_path))


# --- the balance action and the view ---------------------------------------------------------


def test_the_balance_action_runs_a_tick_now(tmp_path: Path) -> None:
    from tests.support.actions import make_ctx, run

    load_plugins([])
    settings = Settings(data_dir=tmp_path / "data", host="here")
    store = FileStore(settings.data_path)
    store.put_sample("here", "cpu", sample("here"), 10.0)
    output = run("balance", make_ctx(settings, store), {})
    assert output["tick"] == 1
    assert output["weights"]["cpu"]["here"] > 0
    assert store.weights() is not None


def test_the_resources_view_shows_weights_queues_loans_and_decisions(rt: Runtime) -> None:
    from rich.console import Console

    from tdauto.resources.view import render, snapshot

    broker = FakeBroker()
    publish(rt, sample("a", "cpu", active=2), sample("a", "storage"))
    broker.queued = {"tdauto.cpu": 5}
    manager.tick(rt, broker)
    data = snapshot(rt.store, broker)
    assert data["queues"]["tdauto.cpu"] == 5 and data["weights_stale"] is False
    assert set(data["lent"]) == {"storage@a"}
    assert {d["kind"] for d in data["decisions"]} >= {"weight", "add_consumer"}
    console = Console(record=True, width=200)
    console.print(render(data))
    text = console.export_text()
    assert "routing weights (tick 1" in text and "storage@a reads tdauto.cpu" in text
