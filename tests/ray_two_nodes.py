"""Run a two-node Ray cluster on loopback until killed (tests/test_faults.py, test_multinode.py).

``ray start --address`` refuses a second node on one machine while Ray is kept on
127.0.0.1 (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0); with it set to 1, ``ray start`` rewrites
both ``--address=127.0.0.1:...`` and ``--node-ip-address=127.0.0.1`` to the machine's
external address, and a second loopback address (127.0.0.2) makes Ray bind 0.0.0.0. So
this uses Ray's own multi-node test harness, ``ray.cluster_utils.Cluster``: two real
raylets, each with its own workers, every server on 127.0.0.1.

Usage: ``python tests/ray_two_nodes.py [CPUS_HEAD CPUS_NODE2]`` (1 and 1 by default).
Prints one JSON line: the GCS address, both nodes' ids, the second node's raylet PID and
Ray's temp dir (private to this cluster, removed at exit).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time

from ports import free_port

if __name__ == "__main__":
    cpus = [int(a) for a in sys.argv[1:3]] or [1, 1]
    # Its own Ray temp dir (sessions, logs, the ray_current_cluster file that a bare
    # ray.init() reads) and free ports where Ray has fixed defaults (dashboard agent
    # 52365, metrics 44217/44227), so clusters started beside it cannot collide.
    # Short, since Ray's unix socket paths live under it.
    tmp = tempfile.mkdtemp(prefix="r2n", dir="/tmp")
    os.environ["RAY_TMPDIR"] = tmp
    for var in ("AUTOSCALER_METRIC_PORT", "DASHBOARD_METRIC_PORT"):
        os.environ[var] = str(free_port())

    from ray import ray_constants
    from ray.cluster_utils import Cluster

    cluster = Cluster()
    opts = {"node_ip_address": "127.0.0.1", "include_dashboard": False}
    head = cluster.add_node(**opts, num_cpus=cpus[0], dashboard_agent_listen_port=free_port())
    node2 = cluster.add_node(**opts, num_cpus=cpus[1], resources={"node2": 1})
    raylet = node2.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid
    info = {
        "address": cluster.address,
        "node_ids": [head.node_id, node2.node_id],
        "node2_raylet_pid": raylet,
        "temp_dir": os.path.join(tmp, "ray"),
    }
    print(json.dumps(info), flush=True)
    try:
        while sys.stdin.read(1):  # until the test closes stdin (or kills this process)
            time.sleep(0.1)
    finally:
        cluster.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
