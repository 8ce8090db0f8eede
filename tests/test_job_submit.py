"""The user's path: ``ray job submit --working-dir . -- python sweeps/mnist_optimizers.py``
against a real Ray head (with its dashboard and token auth) started for this test."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
from conftest import REPO, free_port

BIN = Path(sys.executable).parent


def stop_head(gcs_port: int) -> None:
    """Kill only this head's processes (``ray stop`` would also stop a user's own cluster)."""
    marks = (f"127.0.0.1:{gcs_port}", f"--gcs_server_port={gcs_port}", f"--port={gcs_port}")
    procs = [
        p
        for p in psutil.process_iter(["cmdline"])
        if any(m in " ".join(p.info["cmdline"] or []) for m in marks)
    ]
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=10)
    for p in alive:
        p.kill()


@pytest.fixture
def ray_head():
    gcs, dash = free_port(), free_port()
    # Every port free, so a cluster the user left running (make up) cannot collide with it.
    extra = {
        f"--{name}-port": free_port()
        for name in (
            "dashboard-agent-listen",
            "dashboard-agent-grpc",
            "runtime-env-agent",
            "metrics-export",
            "ray-client-server",
            "object-manager",
            "node-manager",
        )
    }
    env = {**os.environ, "RAY_AUTH_MODE": "token", "PATH": f"{BIN}:{os.environ['PATH']}"}
    subprocess.run(
        [
            str(BIN / "ray"),
            "start",
            "--head",
            "--node-ip-address=127.0.0.1",
            f"--port={gcs}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dash}",
            "--include-dashboard=true",
            "--num-cpus=2",
            "--disable-usage-stats",
            *(f"{k}={v}" for k, v in extra.items()),
        ],
        check=True,
        env=env,
        capture_output=True,
        timeout=180,
    )
    try:
        yield f"http://127.0.0.1:{dash}", env
    finally:
        stop_head(gcs)
        time.sleep(1)


@pytest.mark.slow
def test_job_submit_runs_the_sweep(ray_head, mlflow_server, tiny_data_root, tmp_path):
    address, env = ray_head
    runtime_env = {"excludes": [".venv", ".run", ".git", "results"]}
    sweep = [
        "sweeps/mnist_optimizers.py",
        "--budget",
        "smoke",
        "--name",
        "job",
        "--data-root",
        str(tiny_data_root),
        "--tracking-uri",
        mlflow_server,
        "--results-dir",
        str(tmp_path / "res"),
        "--storage-path",
        str(tmp_path / "ray"),
    ]
    cmd = [
        str(BIN / "ray"),
        "job",
        "submit",
        "--address",
        address,
        "--working-dir",
        str(REPO),
        "--runtime-env-json",
        json.dumps(runtime_env),
        "--",
        "python",
        *sweep,
    ]
    for _ in range(12):  # the job agent can lag behind `ray start`; a refusal ran nothing
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=REPO)
        log = out.stdout + out.stderr
        if "No available agent" not in log:
            break
        time.sleep(5)
    assert out.returncode == 0, log[-4000:]
    assert "succeeded" in log and "| grid | resnet18 |" in log and mlflow_server in log
    table = pd.read_parquet(tmp_path / "res" / "mnist_optimizers" / "table1.parquet")
    assert table.loc[table["row"] == "grid", "ours_test_acc_pct"].notna().sum() == 4
