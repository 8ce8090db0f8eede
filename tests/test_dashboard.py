"""Optuna Dashboard on a real smoke sweep's study, in headless Chromium: one dashboard
trial per row of the trials table, the trials ASHA stopped marked Pruned (and only those),
each trial's validation accuracy per epoch as its intermediate values. The dashboard is
the real ``optuna-dashboard`` server, started the way ``make up`` starts it.

The browser code is ``docs/screenshots.py``'s (it makes the README's screenshots; saved
also to ``$CNNSWEEP_SCREENSHOT_DIR`` if set)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import free_port
from test_mlflow_ui import MISSING, shots

from sweeps.mnist_optimizers import SWEEP
from sweeps.results import load_results
from sweeps.runner import main


def start_dashboard(storage: str, port: int, log: Path) -> subprocess.Popen:
    """``optuna-dashboard`` on 127.0.0.1:``port``, as the Makefile starts it."""
    exe = Path(sys.executable).with_name("optuna-dashboard")
    cmd = [str(exe), storage, "--host", "127.0.0.1", "--port", str(port), "--server", "wsgiref"]
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT)
    for _ in range(120):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2)
            return proc
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"optuna-dashboard did not start: {log.read_text()[-2000:]}")


def api(url: str):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.load(r)


@pytest.mark.slow
@pytest.mark.skipif(
    bool(MISSING) and not os.environ.get("CI"), reason=f"the dashboard test needs {MISSING}"
)
def test_dashboard_shows_one_trial_per_tune_trial_and_the_pruned_ones(
    ray_local, mlflow_server, tiny_data_root, tmp_path
):
    if MISSING:  # CI must run it
        pytest.fail(f"CI: the dashboard test needs {MISSING}")
    storage = f"sqlite:///{tmp_path}/optuna.db"
    args = ["--budget", "smoke", "--name", "smoke-dash", "--optuna-storage", storage]
    args += ["--data-root", str(tiny_data_root), "--tracking-uri", mlflow_server]
    args += ["--results-dir", str(tmp_path / "res"), "--storage-path", str(tmp_path / "ray")]
    assert main(SWEEP, args) == 0
    tables = load_results("mnist_optimizers", tmp_path / "res")
    trials, epochs = tables["trials"], tables["epochs"]
    pruned = set(trials.loc[trials["stopped_early"], "trial_id"])
    assert pruned and len(pruned) < len(trials)  # smoke: ASHA stops some, not all

    port = free_port()
    dash = start_dashboard(storage, port, tmp_path / "dashboard.log")
    url = f"http://127.0.0.1:{port}"
    try:
        # its JSON API: the trials, states, intermediate values and Tune ids it serves
        sid = shots.study_id(url, "smoke-dash")
        served = api(f"{url}/api/studies/{sid}?after=0")["trials"]
        by_tune = {
            next(a["value"] for a in t["user_attrs"] if a["key"] == "tune_trial_id"): t
            for t in served
        }
        assert len(served) == len(trials) and set(by_tune) == set(trials["trial_id"])
        assert {tid for tid, t in by_tune.items() if t["state"] == "Pruned"} == pruned
        assert {t["state"] for tid, t in by_tune.items() if tid not in pruned} == {"Complete"}
        for row in trials.itertuples():
            mine = epochs[epochs["trial_id"] == row.trial_id].sort_values("epoch")
            got = by_tune[row.trial_id]["intermediate_values"]
            assert [(v["step"], v["value"]) for v in got] == list(
                zip(mine["epoch"], mine["val_acc"], strict=True)
            )
            assert by_tune[row.trial_id]["values"] == [pytest.approx(row.best_val_acc)]

        # what a person sees: the trial count and a Pruned chip on exactly those trials
        out_dirs = [tmp_path / "screenshots"]
        if os.environ.get("CNNSWEEP_SCREENSHOT_DIR"):
            out_dirs.append(Path(os.environ["CNNSWEEP_SCREENSHOT_DIR"]))
        view = shots.capture_study(url, "smoke-dash", out_dirs)
    finally:
        dash.terminate()
        dash.wait(timeout=30)
    assert view.count == f"{len(trials)} Trials"
    number = {tid: t["number"] for tid, t in by_tune.items()}
    assert {n for n, chips in view.chips.items() if "Pruned" in chips} == {
        number[t] for t in pruned
    }
    assert set(view.chips) == set(number.values())
    assert len(view.screenshots) == 2 * len(out_dirs)
