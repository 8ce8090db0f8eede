"""The user's path: ``ray job submit --working-dir . -- python sweeps/mnist_optimizers.py``
against a real Ray head (with its dashboard and token auth) started for this test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, free_port, ray_env, start_ray_node, stop_ray_cluster

BIN = Path(sys.executable).parent


@pytest.fixture
def ray_head():
    dash = free_port()
    ports = start_ray_node(2, dashboard_port=dash)
    try:
        yield f"http://127.0.0.1:{dash}", ray_env()
    finally:
        stop_ray_cluster(ports["port"])
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
    assert "succeeded" in log and "  resnet18 / adam / lr 0.001 " in log and mlflow_server in log
    table = pd.read_parquet(tmp_path / "res" / "mnist_optimizers" / "table1.parquet")
    assert table.loc[table["row"] == "grid", "ours_test_acc_pct"].notna().sum() == 4


@pytest.mark.slow
def test_direct_run_starts_a_private_ray_on_loopback(tiny_data_root, tmp_path):
    """The README's other path, ``python sweeps/mnist_optimizers.py``, with none of the
    Makefile's environment: it must start its own Ray on 127.0.0.1 and finish."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RAY_", "MLFLOW_")) and k != "CNNSWEEP_DATA_ROOT"
    }
    cmd = [sys.executable, "sweeps/mnist_optimizers.py", "--budget", "smoke", "--epochs", "1"]
    cmd += ["--lrs", "0.01", "--optimizers", "adam", "--data-root", str(tiny_data_root)]
    cmd += ["--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]
    cmd += ["--results-dir", str(tmp_path / "res"), "--storage-path", str(tmp_path / "ray")]
    out = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    trials = pd.read_parquet(tmp_path / "res" / "mnist_optimizers" / "trials.parquet")
    assert len(trials) == 1 and trials["test_acc"].notna().all()
