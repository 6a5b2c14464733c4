"""The file store's rollup journal: an append per event, folded exactly once, even after a
fold cut short by a crash."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tdauto.monitoring.rollups import buckets_at
from tdauto.store import FileStore
from tdauto.store.backend import RollupDelta
from tdauto.store.files_monitoring import FOLD_BYTES

T = 1_800_000_000.0


def delta(value: float) -> RollupDelta:
    return RollupDelta(
        buckets_at(T),
        incr={"n": 1, "sum": value},
        maxima={"top": value},
        latest={"task|a": (T + value, f"v{value:g}")},
    )


def rollups(root: Path) -> Path:
    return root / "metrics" / "rollups"


def test_a_rollup_is_one_append_and_no_bucket_file_until_a_read(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    for value in (3.0, 7.0):
        store.add_rollup(delta(value))
    assert sorted(p.name for p in rollups(tmp_path).iterdir()) == ["journal.jsonl"]
    assert len((rollups(tmp_path) / "journal.jsonl").read_text().splitlines()) == 2
    # a read folds first, so it is never behind
    assert store.read_rollups(["all"]) == [{"n": 2.0, "sum": 10.0, "top": 7.0}]
    assert store.rollup_latest() == {"task|a": (T + 7.0, "v7")}
    assert not (rollups(tmp_path) / "journal.jsonl").exists()
    assert store.read_rollups(["all"]) == [{"n": 2.0, "sum": 10.0, "top": 7.0}]


def test_a_long_journal_is_folded_by_the_write_that_makes_it_so(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    count = 0
    while not (rollups(tmp_path) / "all.json").exists():
        store.add_rollup(delta(1.0))
        count += 1
        assert count < FOLD_BYTES  # each entry is far longer than a byte
    assert json.loads((rollups(tmp_path) / "all.json").read_text())["n"] == count
    assert store.read_rollups(["all"])[0]["n"] == count


def test_a_fold_cut_short_by_a_crash_is_finished_without_counting_twice(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.add_rollup(delta(1.0))
    assert store.read_rollups(["all"])[0]["n"] == 1  # folded once: every bucket file exists
    # Given a fold that renamed its journal and applied it to the `all` bucket only, then died
    folder = rollups(tmp_path)
    for value in (2.0, 3.0):
        store.add_rollup(delta(value))
    (folder / "fold.seq").write_text("2")
    left = folder / "fold-000000000002.jsonl"
    os.replace(folder / "journal.jsonl", left)
    all_bucket = json.loads((folder / "all.json").read_text())
    all_bucket.update(n=3.0, sum=6.0, top=3.0, _fold=2)
    (folder / "all.json").write_text(json.dumps(all_bucket))
    # and a new event since
    store.add_rollup(delta(4.0))
    # When the next read folds, Then every bucket counts each event once
    for bucket in store.read_rollups([b.id for b in buckets_at(T)]):
        assert bucket == {"n": 4.0, "sum": 10.0, "top": 4.0}
    assert sorted(p.name for p in folder.glob("*.jsonl")) == []


def test_an_entry_that_cannot_be_counted_is_dropped_and_the_rest_counted(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.add_rollup(delta(1.0))
    with (rollups(tmp_path) / "journal.jsonl").open("a") as journal:
        journal.write('{"half a line\n')
    store.add_rollup(delta(2.0))
    assert store.read_rollups(["all"]) == [{"n": 2.0, "sum": 3.0, "top": 2.0}]
