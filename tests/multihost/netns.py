"""Hosts with their own network addresses, made of Linux network namespaces.

One namespace per host, each with an ``eth0`` (a veth pair) plugged into a bridge that lives
in a namespace of its own (the switch), so the machine's own network is never touched except
for one veth leg into the switch that lets the test process (in the root namespace) reach
the hosts, as an operator's laptop would. Addresses come from 198.18.0.0/15, the range set
aside for network benchmarks (RFC 2544), one /24 per test run; nothing leaves the switch.

A host is cut off by setting its ``eth0`` down (its address stays, its routes go) and
brought back by setting it up. Killing a host SIGKILLs every process inside its namespace
(``ip netns pids``), which is what a power cut does to it.

Needs root and iproute2's ``ip``; :func:`require_netns` fails with a clear message otherwise.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "tdmh"
"""Namespaces of these tests are named ``tdmh<pid>-<host>``; stale ones are removed at start."""

NEEDS = (
    "the multi-host tests run hosts in Linux network namespaces: they need root and iproute2's "
    "`ip` (apt-get install -y iproute2), and a kernel that allows `ip netns add`"
)


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def require_netns() -> None:
    """Raise with what is missing, unless namespaces can be made here."""
    if os.geteuid() != 0:
        raise RuntimeError(f"not root (euid {os.geteuid()}): {NEEDS}")
    if shutil.which("ip") is None:
        raise RuntimeError(f"`ip` not found: {NEEDS}")
    probe = f"{PREFIX}{os.getpid()}-probe"
    result = ip("netns", "add", probe, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"`ip netns add` failed ({result.stderr.strip()}): {NEEDS}")
    ip("netns", "del", probe, check=False)


def remove_stale() -> None:
    """Delete namespaces (and kill their processes) left by runs whose process is gone."""
    listing = ip("netns", "list", check=False).stdout
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        if not name.startswith(PREFIX):
            continue
        pid_text = name[len(PREFIX):].split("-", 1)[0]
        if pid_text.isdigit() and Path(f"/proc/{pid_text}").exists():
            continue  # another run in progress
        kill_namespace(name)
        ip("netns", "del", name, check=False)


def namespace_pids(name: str) -> list[int]:
    out = ip("netns", "pids", name, check=False).stdout
    return [int(p) for p in out.split() if p.isdigit()]


def kill_namespace(name: str) -> int:
    """SIGKILL every process in namespace ``name``; returns how many were killed."""
    killed = 0
    for _ in range(20):  # children forked meanwhile are caught by the next round
        pids = namespace_pids(name)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
        time.sleep(0.05)
    return killed


@dataclass
class Host:
    name: str
    namespace: str
    address: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(
        self, argv: list[str], env: dict[str, str], log: Path, cwd: Path
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside this host (``ip netns exec`` execs it: same pid)."""
        log.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.namespace, *argv],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def kill_all(self) -> int:
        """Every process of this host, at once, with no chance to clean up."""
        killed = kill_namespace(self.namespace)
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        return killed

    def link(self, up: bool) -> None:
        ip("-n", self.namespace, "link", "set", "eth0", "up" if up else "down")


class Network:
    """A switch namespace with a bridge, hosts plugged into it, and the test's own leg.

    Each network of a run gets its own /24, so no client pooled by an earlier test (kombu
    keeps connections per URL) reaches a later test's Redis at the same address."""

    made = 0

    def __init__(self) -> None:
        Network.made += 1
        self.tag = f"{PREFIX}{os.getpid()}"
        self.subnet = f"198.18.{(os.getpid() * 7 + Network.made) % 250 + 1}"
        self.switch = f"{self.tag}-sw"
        self.leg = f"tdm{os.getpid() % 100000}"  # in the root namespace: <= 15 chars
        self.hosts: dict[str, Host] = {}
        self._made: list[str] = []

    @property
    def controller_address(self) -> str:
        return f"{self.subnet}.254"

    def up(self) -> None:
        remove_stale()
        self._add_ns(self.switch)
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")
        ip("link", "add", self.leg, "type", "veth", "peer", "name", "ctl", "netns", self.switch)
        ip("-n", self.switch, "link", "set", "ctl", "master", "br0", "up")
        ip("addr", "add", f"{self.controller_address}/24", "dev", self.leg)
        ip("link", "set", self.leg, "up")

    def add_host(self, name: str, octet: int) -> Host:
        namespace = f"{self.tag}-{name}"
        self._add_ns(namespace)
        port = f"v{name}"
        ip("-n", self.switch, "link", "add", port, "type", "veth", "peer", "name", "eth0",
           "netns", namespace)
        ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
        address = f"{self.subnet}.{octet}"
        ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
        ip("-n", namespace, "link", "set", "eth0", "up")
        ip("-n", namespace, "link", "set", "lo", "up")
        host = Host(name, namespace, address)
        self.hosts[name] = host
        return host

    def down(self) -> None:
        """Kill every process of every host, delete the namespaces and the leg. Idempotent."""
        for host in self.hosts.values():
            host.kill_all()
        for name in reversed(self._made):
            kill_namespace(name)
            ip("netns", "del", name, check=False)
        self._made.clear()
        ip("link", "del", self.leg, check=False)  # gone with the switch already, normally

    def _add_ns(self, name: str) -> None:
        ip("netns", "add", name)
        self._made.append(name)
