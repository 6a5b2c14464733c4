"""The local broker under load: 4 producer and 3 consumer processes, 20,000 messages, one
consumer SIGKILLed in the middle. Every message is processed at least once, none is lost,
no consumer crashes, and only the killed consumer's in-flight message may come twice
(docs/architecture.md, "The local broker"). Run with ``-s`` for the figures."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from tdauto.localbroker import counts
from tests.support.localbroker import consume, done, produce

pytestmark = pytest.mark.integration

PRODUCERS, CONSUMERS, MESSAGES = 4, 3, 20_000


def test_producers_consumers_and_a_killed_consumer(tmp_path: Path) -> None:
    folder, out = tmp_path / "broker", tmp_path / "out"
    out.mkdir()
    ctx = multiprocessing.get_context("spawn")
    share = MESSAGES // PRODUCERS
    consumers = [
        ctx.Process(target=consume,
                    args=(str(folder), "stress", str(out / f"consumer-{i}.ids"), MESSAGES, 15.0))
        for i in range(CONSUMERS)
    ]
    producers = [
        ctx.Process(target=produce, args=(str(folder), "stress", range(p * share,
                                                                          (p + 1) * share)))
        for p in range(PRODUCERS)
    ]
    start = time.monotonic()
    for proc in consumers + producers:
        proc.start()
    try:
        victim = consumers[0]
        while done(out) < MESSAGES // 2:
            assert time.monotonic() - start < 60, f"only {done(out)} processed in 60 s"
            time.sleep(0.01)
        assert victim.pid is not None
        os.kill(victim.pid, signal.SIGKILL)
        for proc in producers + consumers:
            proc.join(90)
    finally:
        for proc in producers + consumers:
            if proc.is_alive():
                proc.kill()
                proc.join()
    elapsed = time.monotonic() - start

    seen: Counter[int] = Counter()
    for path in out.glob("consumer-*.ids"):
        seen.update(int(line) for line in path.read_text().split())
    killed_ids = (out / "consumer-0.ids").read_text().split()
    duplicates = {i: n for i, n in seen.items() if n > 1}
    crashes = [p.exitcode for p in producers + consumers[1:] if p.exitcode != 0]
    print(f"\nlocal broker stress: {MESSAGES} messages, {PRODUCERS} producers, {CONSUMERS}"
          f" consumers (one SIGKILLed after {len(killed_ids)} of its messages), {elapsed:.1f} s;"
          f" processed {sum(seen.values())}, distinct {len(seen)}, lost"
          f" {MESSAGES - len(seen)}, duplicates {sum(n - 1 for n in duplicates.values())}"
          f" {sorted(duplicates)}, crashes {len(crashes)}, broker at the end {counts(folder)}")

    assert victim.exitcode == -signal.SIGKILL
    assert crashes == []
    assert set(seen) == set(range(MESSAGES))  # none lost
    # only the message the killed consumer had recorded but not acked can come again
    assert set(duplicates) <= set(int(i) for i in killed_ids[-1:])
    assert all(n == 2 for n in duplicates.values())
    assert counts(folder) == {"ready": 0, "held": 0, "bad": 0}
