"""The supervisor of ``tdauto up`` and ``start()``: restarts with backoff, gives up on a crash
loop, stops whole process groups; the data dir's lock; output to a broken pipe."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from tdauto.supervisor import CrashLoop, RestartPolicy, Supervisor, describe
from tdauto.up import PipeSafe
from tdauto.uplock import AlreadyRunning, UpLock, holder


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sleeper() -> subprocess.Popen[bytes]:
    """A child in its own session that also has a child of its own (as a worker's pool)."""
    return subprocess.Popen(["sh", "-c", "sleep 600 & exec sleep 600"], start_new_session=True)


def kill(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait()


@pytest.fixture
def supervised() -> tuple[Supervisor, Clock, list[str]]:
    clock, said = Clock(), []
    sup = Supervisor({"cpu": sleeper, "memory": sleeper}, say=said.append, clock=clock)
    sup.start()
    yield sup, clock, said
    sup.stop(grace_s=2)


def test_an_exited_pool_is_restarted_after_a_growing_backoff(supervised) -> None:
    sup, clock, said = supervised
    delays = []
    for _ in range(4):
        first = sup.process("cpu")
        assert first is not None
        kill(first)
        sup.check()
        assert f"pool cpu exited unexpectedly (signal SIGKILL, pid {first.pid})" in said[-1]
        delays.append(float(said[-1].rsplit("restarting in ", 1)[1].rstrip("s")))
        clock.now += delays[-1] - 0.1
        sup.check()  # not due yet: nothing started
        assert sup.process("cpu") is None
        clock.now += 0.1
        sup.check()
        assert "pool cpu restarted" in said[-1]
        again = sup.process("cpu")
        assert again is not None and again.poll() is None and again.pid != first.pid
        clock.now += 10  # four exits stay within the crash window
    assert delays == [1, 2, 4, 8]
    assert sup.restarts() == {"cpu": 4, "memory": 0}


def test_the_backoff_is_capped_and_reset_after_a_healthy_minute() -> None:
    policy = RestartPolicy()
    assert [policy.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    clock, said = Clock(), []
    sup = Supervisor({"cpu": sleeper}, say=said.append, clock=clock)
    sup.start()
    try:
        for _ in range(2):
            kill(sup.process("cpu"))  # type: ignore[arg-type]
            sup.check()
            clock.now += 30
            sup.check()
        assert said[-2].endswith("restarting in 2s")
        clock.now += 61  # healthy for a minute: the next exit starts over at 1 s
        sup.check()
        kill(sup.process("cpu"))  # type: ignore[arg-type]
        sup.check()
        assert said[-1].endswith("restarting in 1s")
    finally:
        sup.stop(grace_s=2)


def test_five_exits_in_a_minute_stop_the_restarts(supervised) -> None:
    sup, clock, _ = supervised
    for _ in range(4):
        kill(sup.process("cpu"))  # type: ignore[arg-type]
        sup.check()
        clock.now += 9
        sup.check()
    kill(sup.process("cpu"))  # type: ignore[arg-type]
    loop = r"pool cpu exited 5 times within 60s \(last signal SIGKILL"
    with pytest.raises(CrashLoop, match=loop):
        sup.check()
    clock.now += 60
    sup.check()  # given up: not started again, and the other pool still runs
    assert sup.process("cpu") is None
    assert sup.process("memory").poll() is None  # type: ignore[union-attr]


def test_exits_spread_over_more_than_a_minute_are_not_a_crash_loop(supervised) -> None:
    sup, clock, _ = supervised
    for _ in range(8):
        kill(sup.process("cpu"))  # type: ignore[arg-type]
        sup.check()
        clock.now += 31
        sup.check()
    assert sup.restarts() == {"cpu": 8, "memory": 0}


def deaf_child() -> subprocess.Popen[bytes]:
    """A leader that SIGTERM stops, with a child that ignores SIGTERM and outlives it."""
    return subprocess.Popen(
        ["sh", "-c", "(trap '' TERM; exec sleep 600) & exec sleep 600"], start_new_session=True
    )


def test_stop_ends_every_process_of_every_group() -> None:
    sup = Supervisor({"cpu": sleeper, "memory": deaf_child})
    sup.start()
    time.sleep(0.2)
    tree = [psutil.Process(p.pid) for p in sup.processes]
    tree += [c for p in list(tree) for c in p.children(recursive=True)]
    assert len(tree) == 4
    sup.stop(grace_s=5)
    _gone, alive = psutil.wait_procs(tree, timeout=5)
    assert alive == []


def stubborn() -> subprocess.Popen[bytes]:
    """A process that ignores SIGTERM and says when it does."""
    code = (
        "import signal, time; signal.signal(15, signal.SIG_IGN); "
        "print(1, flush=True); time.sleep(600)"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code], start_new_session=True, stdout=subprocess.PIPE
    )


def test_a_second_signal_skips_the_grace_period() -> None:
    sup = Supervisor({"cpu": stubborn})
    sup.start()
    assert sup.processes[0].stdout.readline() == b"1\n"  # type: ignore[union-attr]
    hurry = threading.Event()
    threading.Timer(0.5, hurry.set).start()
    started = time.monotonic()
    sup.stop(grace_s=60, hurry=hurry)
    assert time.monotonic() - started < 30  # not the 60 s grace
    assert sup.processes == []


def test_exit_codes_read_as_a_person_reads_them() -> None:
    assert describe(-9) == "signal SIGKILL"
    assert describe(1) == "code 1"


# --- the data dir's lock ---------------------------------------------------------------------

HOLD = """
import sys, time
from pathlib import Path
from tdauto.uplock import UpLock
lock = UpLock(Path(sys.argv[1]))
lock.acquire()
lock.record("cpu", int(sys.argv[2]))
print("held", flush=True)
time.sleep(600)
"""


def _hold(data_dir: Path, child_pid: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(data_dir), str(child_pid)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path: Path) -> None:
    orphan = sleeper()
    first = _hold(tmp_path, orphan.pid)
    try:
        assert holder(tmp_path) == first.pid
        with pytest.raises(AlreadyRunning) as refused:
            UpLock(tmp_path).acquire()
        assert str(refused.value) == (
            f"tdauto up is already running for {tmp_path} (pid {first.pid})"
        )
        assert orphan.poll() is None  # a refused acquire touches nothing
    finally:
        first.kill()
        first.wait()
    # The holder was killed: its lock is free, and the pool it left running is stopped
    assert holder(tmp_path) is None
    lock = UpLock(tmp_path)
    assert lock.acquire() == [orphan.pid]
    assert orphan.wait(timeout=5) == -signal.SIGKILL
    assert holder(tmp_path) == os.getpid()
    lock.release()
    assert holder(tmp_path) is None


def test_a_reused_pid_is_not_taken_for_an_orphan(tmp_path: Path) -> None:
    bystander = sleeper()
    try:
        (tmp_path / "state").mkdir()
        (tmp_path / "state" / "up.lock").write_text(
            f'{{"pid": 1, "children": {{"cpu": {{"pid": {bystander.pid}, "created": 1.0}}}}}}'
        )
        lock = UpLock(tmp_path)
        assert lock.acquire() == []
        lock.release()
        assert bystander.poll() is None
    finally:
        kill(bystander)


# --- output to a console that went away -------------------------------------------------------


def test_writes_to_a_broken_pipe_are_dropped_and_the_descriptor_quieted() -> None:
    read, write = os.pipe()
    stream = os.fdopen(write, "w")
    os.close(read)  # the reader (tee) is gone
    safe = PipeSafe(stream)
    assert safe.write("stopping…\n") == len("stopping…\n")
    assert safe.broken
    safe.write("stopped.\n")
    safe.flush()
    stream.write("anything else in the process\n")
    stream.flush()  # the descriptor now points at /dev/null: no EPIPE
    stream.close()
