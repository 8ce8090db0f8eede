"""Hosts on one LAN, made of Linux network namespaces (tests/test_multihost.py).

Each host is a network namespace with its own interfaces, addresses and ports: the first
holds a bridge with the LAN's first address (10.213.K.1/24), every other one a veth pair
from that bridge (its end named ``eth0``, the next address), ``lo`` up in each. Nothing is
ever made in the machine's own namespace, and only these addresses are ever contacted.
The filesystem stays shared (as NFS would share ``--storage-path``) and so does the
clock, so timestamps taken on different hosts compare directly.

    with Hosts(("hd", "w1", "w2")) as lan:
        lan.popen("w1", ["ray", "start", ...])        # a process on host w1
        lan.call("hd", urllib.request.urlopen, url)   # a function whose sockets are hd's
        lan.kill("w1")                                # every process of the host, SIGKILL
        lan.cut("w2"); lan.restore("w2")              # its cable, out of the switch and back

Faults: :meth:`kill` is a host that dies (power, kernel panic); :meth:`cut` takes the
host's veth out of the bridge, so packets in both directions are dropped silently while
both ends keep their carrier, as when a switch port or an uplink fails (this machine's
kernel has no netem, iptables or tc filters). :meth:`close` kills every process in every
namespace, deletes the namespaces (their links and bridge with them) and returns what
was left, which the caller asserts is nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/var/run/netns")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and out.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {out.stderr.strip()}")
    return out


def unavailable() -> str | None:
    """Why namespaces cannot be made here (None: they can)."""
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "making network namespaces needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN)"
    probe = f"cs{os.getpid()}probe"
    out = _ip("netns", "add", probe, check=False)
    _ip("netns", "del", probe, check=False)
    return f"`ip netns add` failed: {out.stderr.strip()}" if out.returncode else None


class Hosts:
    """Network namespaces named ``cs<pid><host>``, one per host, on one bridge."""

    def __init__(self, hosts: tuple[str, ...], tag: str | None = None):
        self.tag = tag or f"cs{os.getpid()}"
        self.hosts = hosts
        k = os.getpid() % 250 + 1  # a /24 per test run, in case two runs share a machine
        self.ip = {h: f"10.213.{k}.{i + 1}" for i, h in enumerate(hosts)}
        self.inodes: dict[str, int] = {}  # each namespace's identity, to find its processes
        self.switch = hosts[0]

    def ns(self, host: str) -> str:
        return f"{self.tag}{host}"

    def __enter__(self) -> Hosts:
        try:
            self.up()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def up(self) -> None:
        for h in self.hosts:
            _ip("netns", "add", self.ns(h))
            self.inodes[h] = os.stat(NETNS_DIR / self.ns(h)).st_ino
            _ip("-n", self.ns(h), "link", "set", "lo", "up")
        sw = self.ns(self.switch)
        _ip("-n", sw, "link", "add", "br0", "type", "bridge")
        _ip("-n", sw, "addr", "add", f"{self.ip[self.switch]}/24", "dev", "br0")
        _ip("-n", sw, "link", "set", "br0", "up")
        for h in self.hosts[1:]:
            # the switch's port is named as the host's namespace (unique on the machine,
            # so a leftover would show in `ip link`); the host's end is its eth0
            _ip("-n", sw, "link", "add", self.ns(h), "type", "veth", "peer", "name", "eth0",
                "netns", self.ns(h))  # fmt: skip
            _ip("-n", sw, "link", "set", self.ns(h), "master", "br0", "up")
            _ip("-n", self.ns(h), "addr", "add", f"{self.ip[h]}/24", "dev", "eth0")
            _ip("-n", self.ns(h), "link", "set", "eth0", "up")

    def popen(self, host: str, cmd: list, log: Path, **kw) -> subprocess.Popen:
        """``cmd`` on ``host``, in its own session, output appended to ``log``."""
        with open(log, "a") as f:
            return subprocess.Popen(
                ["ip", "netns", "exec", self.ns(host), *map(str, cmd)],
                stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, **kw,
            )  # fmt: skip

    def run(self, host: str, cmd: list, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
        """``cmd`` on ``host`` to its end; its output captured as text."""
        return subprocess.run(
            ["ip", "netns", "exec", self.ns(host), *map(str, cmd)],
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kw,
        )  # fmt: skip

    def enter(self, host: str) -> None:
        """Move the calling thread (never the main one) into ``host``'s namespace."""
        assert threading.current_thread() is not threading.main_thread()
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(NETNS_DIR / self.ns(host), os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET):
                raise OSError(ctypes.get_errno(), f"setns {self.ns(host)}")
        finally:
            os.close(fd)

    def call(self, host: str, fn: Callable, *args, **kwargs):
        """``fn(*args, **kwargs)`` in a thread moved into ``host``'s namespace: every socket
        it opens is that host's (a namespace is per thread; this process stays outside)."""
        box: dict = {}

        def inside():
            try:
                self.enter(host)
                box["value"] = fn(*args, **kwargs)
            except BaseException as exc:  # re-raised in the caller's thread
                box["error"] = exc

        t = threading.Thread(target=inside, daemon=True)
        t.start()
        t.join()
        if "error" in box:
            raise box["error"]
        return box["value"]

    def reachable(self, host: str, ip: str, port: int, timeout: float = 3) -> bool:
        """Whether a TCP connection from ``host`` to ``ip:port`` is accepted."""

        def connect():
            with contextlib.suppress(OSError):
                import socket

                socket.create_connection((ip, port), timeout=timeout).close()
                return True
            return False

        return self.call(host, connect)

    def pids(self, host: str) -> list[int]:
        """Every process whose network namespace is ``host``'s."""
        ino = self.inodes.get(host)
        found = []
        for p in psutil.pids():
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{p}/ns/net").st_ino == ino:
                    found.append(p)
        return found

    def kill(self, host: str, timeout: float = 30) -> int:
        """SIGKILL every process of ``host`` at once (until none is left: one being forked
        as the first are killed is killed on the next pass); returns how many."""
        killed: set[int] = set()
        deadline = time.monotonic() + timeout
        while (left := self.pids(host)) and time.monotonic() < deadline:
            for p in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
            killed |= set(left)
            psutil.wait_procs([psutil.Process(p) for p in left if psutil.pid_exists(p)], 5)
        return len(killed)

    def cut(self, host: str) -> None:
        """Take ``host``'s port out of the switch: both sides drop packets silently."""
        _ip("-n", self.ns(self.switch), "link", "set", self.ns(host), "nomaster")

    def restore(self, host: str) -> None:
        _ip("-n", self.ns(self.switch), "link", "set", self.ns(host), "master", "br0")

    def leftovers(self) -> dict:
        """What of this LAN is still there: its namespaces, links with its names in the
        machine's own namespace, processes in its namespaces."""
        listed = _ip("netns", "list").stdout.split()
        root_links = _ip("-o", "link").stdout
        return {
            "namespaces": [n for n in listed if n.startswith(self.tag)],
            "links": [ln for ln in root_links.splitlines() if self.tag in ln],
            "processes": {h: self.pids(h) for h in self.inodes if self.pids(h)},
        }

    def close(self) -> dict:
        """Kill every process of every host, delete the namespaces (links and bridge go
        with them); returns :meth:`leftovers`. Safe to call twice, or half-way up."""
        for h in self.inodes:
            self.kill(h)
        for h in self.hosts:
            if (NETNS_DIR / self.ns(h)).exists():
                _ip("netns", "del", self.ns(h), check=False)
        left = self.leftovers()
        if not left["processes"]:
            self.inodes.clear()
        return left
