"""Free TCP ports for the servers a test starts.

A port the kernel hands out for ``bind(0)`` lies in its ephemeral range, the same range
every outgoing connection and every ``port=0`` server draws from: Ray alone opens dozens
while a cluster starts, so a port picked that way can be taken again before the test's
own server binds it (an MLflow or optuna-dashboard ``Address already in use``). Ports
are therefore drawn below the ephemeral range and above Ray's worker ports
(``--min-worker-port`` 10002 .. ``--max-worker-port`` 19999 by default), where nothing
is handed out unasked, and never twice in one process.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_RAY_WORKER_PORTS_END = 19999
_given: set[int] = set()


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port() -> int:
    low, high = _RAY_WORKER_PORTS_END + 1, _ephemeral_start() - 1
    for _ in range(1000):
        port = random.randint(low, high)
        if port in _given:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.add(port)
        return port
    raise RuntimeError(f"no free port in {low}..{high}")
