"""Run a two-node Ray cluster on loopback until killed (used by tests/test_faults.py).

``ray start --address`` refuses a second node on one machine while Ray is kept on
127.0.0.1 (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0), so this uses Ray's own multi-node test
harness, ``ray.cluster_utils.Cluster``: two real raylets, each with its own workers.
Prints one JSON line: the GCS address and the second node's raylet PID.
"""

from __future__ import annotations

import json
import sys
import time

from ray import ray_constants
from ray.cluster_utils import Cluster

if __name__ == "__main__":
    cluster = Cluster()
    opts = {"node_ip_address": "127.0.0.1", "num_cpus": 1, "include_dashboard": False}
    cluster.add_node(**opts)
    node2 = cluster.add_node(**opts, resources={"node2": 1})
    raylet = node2.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid
    print(json.dumps({"address": cluster.address, "node2_raylet_pid": raylet}), flush=True)
    while sys.stdin.read(1):  # until the test closes stdin (or kills this process)
        time.sleep(0.1)
    cluster.shutdown()
