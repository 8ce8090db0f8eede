"""The README's main path on a machine where nobody has used Ray: ``HOME`` is a new empty
folder (no ``~/.ray``, no ``~/ray_results``, no caches), and nothing of the user's
environment names a token. ``make up`` must create the cluster token (0600 in a 0700
folder, its path said and its value never), ``make run`` must submit the smoke sweep
with ``ray job submit`` and end with the table printed once (its Optuna study shown live by
the optuna-dashboard ``make up`` started), and ``make down`` must stop exactly what ``make
up`` started. Every service is on private loopback ports."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import urllib.request

import pandas as pd
import pytest
from conftest import HEAD_PORTS, NODE_PORTS, REPO, free_port

from sweeps.cluster import cluster_processes


def _make(target: str, variables: list[str], env: dict, timeout: float) -> str:
    out = subprocess.run(
        ["make", "--no-print-directory", target, *variables],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    log = out.stdout + out.stderr
    assert out.returncode == 0, f"make {target} exited {out.returncode}:\n{log[-5000:]}"
    return log


def _studies(url: str) -> list[tuple[int, str]]:
    """(id, name) of every study the optuna-dashboard at ``url`` shows."""
    with urllib.request.urlopen(f"{url}/api/studies", timeout=10) as r:
        return [(s["study_id"], s["study_name"]) for s in json.load(r)["study_summaries"]]


@pytest.mark.slow
def test_make_up_run_down_on_a_fresh_home(tmp_path, tiny_data_root):
    home = tmp_path / "home"
    home.mkdir()
    # nothing of the user's (or the test session's) Ray, MLflow or token settings
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RAY_", "MLFLOW_", "CNNSWEEP_", "XDG_", "MPLCONFIGDIR"))
    }
    env |= {"HOME": str(home), "CNNSWEEP_DATA_ROOT": str(tiny_data_root)}
    gcs, dashboard, mlflow, optuna = free_port(), free_port(), free_port(), free_port()
    ports = " ".join(f"--{n}-port={free_port()}" for n in NODE_PORTS + HEAD_PORTS)
    variables = [
        f"RUN_DIR={tmp_path / 'run'}",
        f"RESULTS_DIR={tmp_path / 'results'}",
        f"RAY_PORT={gcs}",
        f"DASHBOARD_PORT={dashboard}",
        f"MLFLOW_PORT={mlflow}",
        f"OPTUNA_PORT={optuna}",
        f"RAY_START_ARGS=--num-cpus=2 {ports}",
        "BUDGET=smoke",
    ]
    try:
        up = _make("up", variables, env, timeout=600)
        token = home / ".ray" / "auth_token"
        assert stat.S_IMODE(token.stat().st_mode) == 0o600
        assert stat.S_IMODE(token.parent.stat().st_mode) == 0o700
        secret = token.read_text().strip()
        assert len(secret) == 64  # 256 bits, as `ray get-auth-token --generate` makes
        assert f"Ray auth token: {token} (created" in up
        assert secret not in up
        # the dashboard answers on Optuna's schema in RUN_DIR (SQLite), with no study yet
        optuna_url = f"http://127.0.0.1:{optuna}"
        assert f"Optuna dashboard: {optuna_url}" in up
        assert _studies(optuna_url) == []
        assert (tmp_path / "run" / "optuna.db").stat().st_size > 0

        run = _make("run", variables, env, timeout=900)
        print(run)  # shown by pytest -s or on failure: what a user sees
        assert secret not in run
        assert "succeeded" in run  # ray job submit's own word for the job
        assert f"Ray auth token: {token} (existing)" in run  # make run's `up` reuses it
        # the end reads well: the table once (published vs ours lines), then the headline,
        # the report and the services' URLs; no Markdown pipes, no pandas dump
        assert run.count("published vs ours") == 1, run[-4000:]
        assert run.count("  resnet18 / adam / lr 0.001 ") == 1, run[-4000:]
        assert "Best by validation: resnet18 / " in run and "Gap to the paper: " in run
        assert f"Report: {tmp_path / 'results' / 'mnist_optimizers' / 'report.md'}" in run
        assert f"MLflow UI:        http://127.0.0.1:{mlflow}" in run
        assert f"Optuna dashboard: {optuna_url}" in run
        assert f"Ray dashboard:    http://127.0.0.1:{dashboard}" in run
        assert "| row |" not in run and "ours_test_acc_pct" not in run
        tail = run[run.index("published vs ours") :]
        assert max(map(len, tail.splitlines())) <= 400  # the gap line is prose; rows are short
        assert max(len(line) for line in tail.splitlines() if " paper " in line) <= 100

        table = pd.read_parquet(tmp_path / "results" / "mnist_optimizers" / "table1.parquet")
        ours = table[table["ours_test_acc_pct"].notna()]
        # smoke: resnet18 x 2 opt x 2 lr, and the paper's two resnet18 rows that name no
        # optimizer, each beside our SGD cell at its lr
        assert sorted(ours["row"]) == ["grid"] * 4 + ["paper_no_optimizer"] * 2
        assert set(ours["model"]) == {"resnet18"}
        # Tune's default storage, ~/ray_results, was created on the fresh home
        assert any((home / "ray_results").iterdir())
        # the sweep's study, named after its run, is the dashboard's: one trial per grid cell
        ((study_id, name),) = _studies(optuna_url)
        assert name in {p.name for p in (home / "ray_results").iterdir()}, name
        with urllib.request.urlopen(f"{optuna_url}/api/studies/{study_id}", timeout=30) as r:
            assert len(json.load(r)["trials"]) == 4
    finally:
        down = subprocess.run(
            ["make", "--no-print-directory", "down", *variables],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert down.returncode == 0, down.stdout + down.stderr
    assert not cluster_processes(gcs), "make down left processes of its cluster"
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{mlflow}/health", timeout=2)
    assert f"Optuna dashboard at http://127.0.0.1:{optuna}: stopped" in down.stdout
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{optuna}/api/studies", timeout=2)
