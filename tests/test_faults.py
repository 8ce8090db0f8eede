"""Faults injected for real: a trial's worker SIGKILLed mid-epoch, the driver SIGKILLed
and resumed, a Ray worker node killed, the MLflow server killed and restarted.

Each test starts its own Ray cluster with ``ray start`` (and, where it kills it, its own
MLflow server), runs the sweep's driver as a separate process, injects the fault from
this process, and then checks that nothing was lost or duplicated: one row per trial,
every epoch exactly once in ``epochs.parquet`` and in MLflow's metric history, one MLflow
child run per trial under one parent. With ``$CNNSWEEP_FAULT_REPORT`` set, each test
appends what it injected and how long recovery took to that file (JSON lines).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import psutil
import pytest
from conftest import (
    REPO,
    free_port,
    kill_tree,
    ray_env,
    start_mlflow,
    start_ray_node,
    stop_mlflow,
    stop_ray_cluster,
    two_nodes,
)
from mlflow.tracking import MlflowClient

from sweeps.results import load_results
from sweeps.tracking import MlflowTrialLogger, start_parent_run

pytestmark = [pytest.mark.faults, pytest.mark.slow]
EXPERIMENT = "mnist_optimizers"


def sweep_cmd(name: str, tmp: Path, data_root: Path, uri: str, gcs_port: int, *extra) -> list:
    return [
        sys.executable,
        "sweeps/mnist_optimizers.py",
        "--budget",
        "smoke",
        "--optimizers",
        "adam",
        "--name",
        name,
        "--data-root",
        str(data_root),
        "--tracking-uri",
        uri,
        "--results-dir",
        str(tmp / "res"),
        "--storage-path",
        str(tmp / "ray"),
        "--ray-address",
        f"127.0.0.1:{gcs_port}",
        "--mlflow-wait",
        "60",
        *extra,
    ]


def start_driver(cmd: list, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        cmd,
        cwd=REPO,
        env=ray_env(),
        stdout=open(log, "a"),  # noqa: SIM115 (closed with the process)
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def finish(driver: subprocess.Popen, log: Path, timeout: float = 600) -> str:
    try:
        rc = driver.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(driver.pid, signal.SIGKILL)
        pytest.fail(f"driver did not finish:\n{log.read_text()[-4000:]}")
    text = log.read_text()
    assert rc == 0, text[-4000:]
    return text


def trial_results(experiment: Path) -> dict[str, list[dict]]:
    """Every result Tune has written per trial folder (``result.json``, one per line)."""
    out = {}
    for f in experiment.glob("*/result.json"):
        lines = [ln for ln in f.read_text().splitlines() if ln.strip()]
        rows = []
        for ln in lines:
            try:
                rows.append(json.loads(ln))
            except json.JSONDecodeError:  # a line being written right now
                break
        out[f.parent.name] = rows
    return out


def wait_for(pred, timeout: float, what: str, driver: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        if driver is not None and driver.poll() is not None:
            pytest.fail(f"the driver exited ({driver.returncode}) while waiting for {what}")
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def report(**row) -> None:
    path = os.environ.get("CNNSWEEP_FAULT_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")


def children(client: MlflowClient, name: str) -> tuple:
    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [
        r for r in runs if r.info.run_name == name and "mlflow.parentRunId" not in r.data.tags
    ]
    assert len(parents) == 1, f"{len(parents)} parent runs named {name}"
    pid = parents[0].info.run_id
    return parents[0], [r for r in runs if r.data.tags.get("mlflow.parentRunId") == pid]


def check_nothing_lost(tmp: Path, uri: str, name: str, n_trials: int, epochs: int | None):
    """One row per trial, each epoch once in epochs.parquet and in MLflow, one child run
    per trial (all FINISHED) under one FINISHED parent; returns the tables."""
    tables = load_results(EXPERIMENT, tmp / "res")
    trials, ep = tables["trials"], tables["epochs"]
    assert len(trials) == n_trials and trials["trial_id"].is_unique
    assert (trials["status"] == "TERMINATED").all() and trials["test_acc"].notna().all()
    if epochs is not None:
        assert (trials["epochs_run"] == epochs).all()
    for row in trials.itertuples():
        got = ep.loc[ep["trial_id"] == row.trial_id, "epoch"].tolist()
        assert got == list(range(1, row.epochs_run + 1)), (row.trial_id, got)
    client = MlflowClient(uri)
    parent, kids = children(client, name)
    assert parent.info.status == "FINISHED"
    assert len(kids) == n_trials
    assert sorted(k.data.tags["trial_id"] for k in kids) == sorted(trials["trial_id"])
    assert {k.info.run_id for k in kids} == set(trials["mlflow_run_id"])
    for k in kids:
        assert k.info.status == "FINISHED", k.data.tags["trial_id"]
        row = trials[trials["mlflow_run_id"] == k.info.run_id].iloc[0]
        for metric in ("val_acc", "train_loss"):  # each epoch once, then the selected one
            steps = [m.step for m in client.get_metric_history(k.info.run_id, metric)]
            assert sorted(steps) == list(range(1, row.epochs_run + 2)), (metric, steps)
        hist = {m.step: m.value for m in client.get_metric_history(k.info.run_id, "val_acc")}
        hist.pop(row.epochs_run + 1)
        mine = ep[ep["trial_id"] == row.trial_id].set_index("epoch")["val_acc"].to_dict()
        assert hist == pytest.approx(mine)
    assert {"table1.parquet", "trials.parquet"} <= {
        a.path for a in client.list_artifacts(parent.info.run_id)
    }
    # the Optuna study too: one trial per Tune trial (a resumed driver adds none), each
    # epoch's val_acc once, and a final state
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{tmp}/ray/optuna.db")
    by_tune = {t.user_attrs["tune_trial_id"]: t for t in study.trials}
    assert len(study.trials) == len(trials) and set(by_tune) == set(trials["trial_id"])
    for row in trials.itertuples():
        t = by_tune[row.trial_id]
        assert t.state.is_finished() and t.state.name != "FAIL", (row.trial_id, t.state)
        assert sorted(t.intermediate_values) == list(range(1, row.epochs_run + 1))
    return trials, ep


def restored(rows: list[dict]) -> bool:
    """A trial that was restarted from a checkpoint counts its iterations from there."""
    return any(r["iterations_since_restore"] < r["training_iteration"] for r in rows)


@pytest.fixture
def cluster():
    """A Ray head with 2 CPUs started by ``ray start`` (killed, only it, afterwards)."""
    ports = start_ray_node(2)
    yield ports
    stop_ray_cluster(ports["port"])


def test_killed_trial_restarts_from_its_checkpoint(
    tmp_path, cluster, mlflow_server, tiny_data_root
):
    name = "kill-trial"
    log = tmp_path / "driver.log"
    cmd = sweep_cmd(name, tmp_path, tiny_data_root, mlflow_server, cluster["port"])
    driver = start_driver([*cmd, "--no-asha", "--epochs", "6"], log)
    exp = tmp_path / "ray" / name

    def victim():
        for folder, rows in trial_results(exp).items():
            if rows and rows[-1]["epoch"] >= 2:
                return folder, rows[-1]

    folder, last = wait_for(victim, 300, "a trial at epoch 2", driver)
    t_kill = time.time()
    os.kill(last["pid"], signal.SIGKILL)  # mid-epoch: it has just started the next one
    finish(driver, log)

    trials, _ = check_nothing_lost(tmp_path, mlflow_server, name, 2, epochs=6)
    rows = trial_results(exp)[folder]
    assert restored(rows), "the killed trial restarted from its checkpoint"
    after = [r for r in rows if r["pid"] != last["pid"]]
    assert after and after[0]["epoch"] == last["epoch"] + 1, "its epoch counter continued"
    assert [r["epoch"] for r in rows] == list(range(1, 7)), "no epoch reported twice"
    report(
        fault="trial worker SIGKILLed mid-epoch",
        killed_at_epoch=last["epoch"],
        trials=len(trials),
        rows_lost=0,
        recover_s=round(after[0]["timestamp"] - t_kill, 1),
        note="time to the restarted trial's first result (includes one epoch)",
    )


def run_status(store: Path, name: str) -> str:
    cnnsweep = Path(sys.executable).parent / "cnnsweep"
    out = subprocess.run(
        [cnnsweep, "runs", "--storage-path", store, "--format", "json"],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return {r["name"]: r["status"] for r in json.loads(out.stdout)}[name]


def test_logger_restored_from_an_old_checkpoint_logs_each_epoch_once(mlflow_server):
    """The MLflow half of a killed driver: Tune's experiment checkpoint is written every
    few seconds, so the restored logger may not know the last epoch it logged, and the
    restored trial (one paused at an ASHA rung restarts from its last checkpoint) reports
    that epoch again."""
    client = MlflowClient(mlflow_server)
    exp_id, parent = start_parent_run(client, "stale-state", "sweep", {}, {})
    trial = SimpleNamespace(
        trial_id="t1", config={"model": "resnet18", "optimizer": "sgd", "lr": 0.01}, path="/x"
    )

    def epoch(logger, n):
        logger.on_trial_result(0, [], trial, {"epoch": n, "val_acc": 10.0 * n, "val_loss": 1.0})

    first = MlflowTrialLogger(mlflow_server, exp_id, parent, tags={})
    epoch(first, 1)
    checkpoint = copy.deepcopy(first.get_state())  # the last experiment checkpoint ...
    epoch(first, 2)  # ... then one more epoch reaches MLflow, then the driver is killed
    assert first.drain(force=True) == 0

    second = MlflowTrialLogger(mlflow_server, exp_id, parent, tags={})
    second.set_state(checkpoint)
    for n in (2, 3):  # the restored trial re-reports epoch 2 (its checkpoint was epoch 1)
        epoch(second, n)
    assert second.drain(force=True) == 0
    history = client.get_metric_history(first.run_ids["t1"], "val_acc")
    assert sorted((m.step, m.value) for m in history) == [(1, 10.0), (2, 20.0), (3, 30.0)]


def test_killed_driver_resumes(tmp_path, cluster, mlflow_server, tiny_data_root):
    name = "kill-driver"
    log = tmp_path / "driver.log"
    exp = tmp_path / "ray" / name
    args = ["--search", "optuna", "--num-samples", "4", "--epochs", "4"]
    args += ["--grace-period", "1", "--reduction-factor", "2", "--max-concurrent", "2"]
    cmd = [*sweep_cmd(name, tmp_path, tiny_data_root, mlflow_server, cluster["port"]), *args]
    driver = start_driver(cmd, log)

    def one_trial_ended():
        # a trial ran its 4 epochs or ASHA stopped it (a third trial with results is not
        # enough: one waiting at a rung for ASHA's quorum is paused, not ended)
        state = tmp_path / "ray" / ".cnnsweep" / name / "asha_state.json"
        res = trial_results(exp)
        if not state.exists():
            return None
        asha = json.loads(state.read_text())
        stopped = any(d["decision"] == "stop" for d in asha["decisions"])
        if stopped or any(r and r[-1]["epoch"] == 4 for r in res.values()):
            return asha, res

    before, res_before = wait_for(one_trial_ended, 300, "a finished trial", driver)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait(30)
    t_kill = time.time()
    assert not (tmp_path / "res" / EXPERIMENT / "trials.parquet").exists()
    lrs_before = {f: rows[0]["config"]["lr"] for f, rows in res_before.items() if rows}
    assert run_status(tmp_path / "ray", name) == "died"  # what `cnnsweep runs` tells a user

    t0 = time.time()
    text = finish(start_driver([*cmd, "--resume"], log), log)
    assert "[resume]" in text
    assert run_status(tmp_path / "ray", name) == "finished"
    trials, _ = check_nothing_lost(tmp_path, mlflow_server, name, 4, epochs=None)
    # the searcher was restored: the trials sampled before the kill kept their lr, and
    # it sampled only what was missing
    after = trial_results(exp)
    assert len(after) == 4
    for folder, lr in lrs_before.items():
        assert after[folder][0]["config"]["lr"] == lr
    # A trial that had ended before the kill (its 4 epochs, or stopped by ASHA) trains
    # no epoch past its end. Usually it is not run at all; one whose end Tune had not yet
    # recorded, and whose recorded checkpoint Tune had already replaced, runs again from
    # epoch 1 (sweeps.tuner.LostCheckpointGuard) and, being seeded, reports the same
    # numbers. Running ones were restored from their checkpoints.
    stop_at = {d["trial_id"]: d["rung"] for d in before["decisions"] if d["decision"] == "stop"}
    ended = {
        f: stop_at.get(rows[0]["trial_id"], 4)
        for f, rows in res_before.items()
        if rows and (rows[-1]["epoch"] == 4 or rows[0]["trial_id"] in stop_at)
    }
    assert ended
    for f, end in ended.items():
        assert max(r["epoch"] for r in after[f]) == end, (f, end, after[f])
        first = {}
        for r in after[f]:
            assert first.setdefault(r["epoch"], r["val_loss"]) == pytest.approx(r["val_loss"])
        for r in res_before[f]:
            assert first[r["epoch"]] == pytest.approx(r["val_loss"]), (f, r)
    same = [f for f, rows in res_before.items() if rows and after[f] == rows]
    assert any(restored(rows) for rows in after.values()), "no trial resumed a checkpoint"
    # ASHA's rung records from before the kill are still there, with the same values
    final = json.loads((tmp_path / "ray" / ".cnnsweep" / name / "asha_state.json").read_text())
    # one sweep of one dataset: a single ASHA group, named ""
    rungs0, rungs1 = before["groups"][""], final["groups"][""]
    for (m0, rec0), (m1, rec1) in zip(rungs0, rungs1, strict=True):
        assert m0 == m1 and rec0.items() <= rec1.items(), (m0, rec0, rec1)
    assert sum(len(r) for _, r in rungs1) > sum(len(r) for _, r in rungs0)
    report(
        fault="driver SIGKILLed, rerun with --resume",
        trials=len(trials),
        results_before_kill=sum(len(r) for r in res_before.values()),
        trials_finished_before_kill=len(same),
        asha_records_before=sum(len(r) for _, r in rungs0),
        rows_lost=0,
        recover_s=round(time.time() - t0, 1),
        note="wall time of the resumed driver (start-up, data, remaining epochs)",
        since_kill_s=round(time.time() - t_kill, 1),
    )


def test_resume_when_the_recorded_checkpoint_is_gone(
    tmp_path, cluster, mlflow_server, tiny_data_root
):
    """Tune deletes a trial's previous checkpoint as soon as it records a new one and
    uploads the experiment state naming the new one afterwards: a driver killed in between
    leaves a state that names a deleted checkpoint (test_killed_driver_resumes hit it in
    CI). Made certain here by deleting the checkpoints after the kill: the resumed sweep
    restarts those trials from epoch 1 instead of failing every restore, and every epoch
    is still there once."""
    name = "lost-ckpt"
    log = tmp_path / "driver.log"
    exp = tmp_path / "ray" / name
    args = ["--search", "optuna", "--num-samples", "2", "--epochs", "3", "--no-asha"]
    cmd = [*sweep_cmd(name, tmp_path, tiny_data_root, mlflow_server, cluster["port"]), *args]
    driver = start_driver(cmd, log)

    def both_checkpointed():
        res = trial_results(exp)
        folders = [
            exp / f for f, rows in res.items() if rows and list((exp / f).glob("checkpoint_*"))
        ]
        return folders if len(folders) == 2 else None

    wait_for(both_checkpointed, 300, "two trials with a checkpoint", driver)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait(30)
    unfinished = [f for f, rows in trial_results(exp).items() if rows[-1]["epoch"] < 3]
    assert unfinished, "both trials finished before the kill"
    for folder in unfinished:
        for ckpt in (exp / folder).glob("checkpoint_*"):
            shutil.rmtree(ckpt)
    text = finish(start_driver([*cmd, "--resume"], log), log)
    assert text.count("restarts from epoch 1") == len(unfinished), text[-3000:]
    trials, _ = check_nothing_lost(tmp_path, mlflow_server, name, 2, epochs=3)
    after = trial_results(exp)
    for folder in unfinished:  # run again from the start: epoch 1 reported a second time
        assert [r["epoch"] for r in after[folder]].count(1) == 2


def test_lost_worker_node(tmp_path, mlflow_server, tiny_data_root):
    """A head and a second node (1 CPU each); the node running a trial is killed."""
    env = {**ray_env(), "RAY_AUTH_MODE": "disabled"}  # the test harness has no token setup
    with two_nodes(env) as info:
        raylet2 = psutil.Process(info["node2_raylet_pid"])
        name = "kill-node"
        log = tmp_path / "driver.log"
        port = int(info["address"].rsplit(":", 1)[1])
        cmd = sweep_cmd(name, tmp_path, tiny_data_root, mlflow_server, port)
        driver = subprocess.Popen(
            [*cmd, "--no-asha", "--epochs", "6"],
            cwd=REPO,
            env=env,
            stdout=open(log, "a"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        exp = tmp_path / "ray" / name
        on_node2: set[int] = set()

        def trial_on_node2():
            on_node2.update(p.pid for p in raylet2.children(recursive=True))
            for folder, rows in trial_results(exp).items():
                if rows and rows[-1]["epoch"] >= 2 and rows[-1]["pid"] in on_node2:
                    return folder, rows[-1]

        folder, last = wait_for(trial_on_node2, 300, "a trial on node 2 at epoch 2", driver)
        t_kill = time.time()
        kill_tree(raylet2)  # the node: its raylet, agents and workers, all at once
        finish(driver, log, timeout=900)
    trials, _ = check_nothing_lost(tmp_path, mlflow_server, name, 2, epochs=6)
    rows = trial_results(exp)[folder]
    assert restored(rows)
    after = [r for r in rows if r["pid"] != last["pid"]]
    assert after and after[0]["epoch"] == last["epoch"] + 1
    assert all(r["pid"] not in on_node2 for r in after), "it moved to the surviving node"
    report(
        fault="worker node killed (raylet + workers, SIGKILL)",
        killed_at_epoch=last["epoch"],
        trials=len(trials),
        rows_lost=0,
        recover_s=round(after[0]["timestamp"] - t_kill, 1),
        note="time to the moved trial's first result (node-death detection + one epoch)",
    )


def test_mlflow_server_killed_and_restarted(tmp_path, cluster, tiny_data_root):
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = start_mlflow(tmp_path / "mlflow", port)
    try:
        name = "kill-mlflow"
        log = tmp_path / "driver.log"
        cmd = sweep_cmd(name, tmp_path, tiny_data_root, uri, cluster["port"])
        driver = start_driver([*cmd, "--no-asha", "--epochs", "8"], log)
        exp = tmp_path / "ray" / name

        def epochs_done():
            return sum(len(r) for r in trial_results(exp).values())

        wait_for(lambda: epochs_done() >= 2, 300, "first epochs", driver)
        stop_mlflow(server, signal.SIGKILL)
        t_down, at_kill = time.time(), epochs_done()
        wait_for(lambda: epochs_done() >= at_kill + 4, 300, "epochs while MLflow is down", driver)
        assert driver.poll() is None, "the sweep goes on without MLflow"
        server = start_mlflow(tmp_path / "mlflow", port)
        t_up = time.time()

        def mlflow_caught_up():
            res = trial_results(exp)
            kids = children(MlflowClient(uri), name)[1]
            if len(kids) < 2:
                return False
            logged = {
                k.data.tags["trial_id"]: len(
                    MlflowClient(uri).get_metric_history(k.info.run_id, "val_acc")
                )
                for k in kids
            }
            return all(
                logged.get(rows[0]["trial_id"], 0) >= len(rows) for rows in res.values() if rows
            )

        wait_for(mlflow_caught_up, 120, "MLflow to catch up")
        t_caught = time.time()
        text = finish(driver, log)
        assert "failed" in text and "server back" in text
        check_nothing_lost(tmp_path, uri, name, 2, epochs=8)
    finally:
        stop_mlflow(server)
    report(
        fault="MLflow server SIGKILLed mid-sweep, restarted",
        down_s=round(t_up - t_down, 1),
        epochs_trained_while_down=f">= {4}",
        rows_lost=0,
        recover_s=round(t_caught - t_up, 1),
        note="from the restart until every queued epoch was in MLflow",
    )


def test_mlflow_down_at_start_fails_before_any_trial(tmp_path, tiny_data_root, capsys):
    from sweeps.mnist_optimizers import SWEEP
    from sweeps.runner import main

    port = free_port()
    stop_mlflow(start_mlflow(tmp_path / "mlflow", port))  # a server that was there, now gone
    uri = f"http://127.0.0.1:{port}"
    args = sweep_cmd("down", tmp_path, tiny_data_root, uri, free_port())[2:]
    assert main(SWEEP, args) == 2
    err = capsys.readouterr().err
    assert f"MLflow tracking server {uri} is not reachable" in err and "--tracking-uri" in err
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and "mlflow" not in p.parts]


def test_mlflow_down_at_the_end_is_spooled_and_replayed(tmp_path, cluster, tiny_data_root):
    """MLflow dies mid-sweep and stays down: the sweep still finishes and writes its
    results, and what it could not log is replayed into MLflow once it is back."""
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = start_mlflow(tmp_path / "mlflow", port)
    name = "mlflow-gone"
    log = tmp_path / "driver.log"
    cmd = sweep_cmd(name, tmp_path, tiny_data_root, uri, cluster["port"], "--lrs", "0.01")
    driver = start_driver([*cmd, "--no-asha", "--epochs", "3", "--mlflow-wait", "3"], log)
    exp = tmp_path / "ray" / name
    wait_for(lambda: any(trial_results(exp).values()), 300, "the first epoch", driver)
    stop_mlflow(server, signal.SIGKILL)
    text = finish(driver, log)
    pending = tmp_path / "ray" / ".cnnsweep" / name / "mlflow_pending" / "pending.json"
    assert f"python -m sweeps.tracking replay {pending}" in text
    assert len(load_results(EXPERIMENT, tmp_path / "res")["trials"]) == 1
    server = start_mlflow(tmp_path / "mlflow", port)
    try:
        t0 = time.time()
        out = subprocess.run(
            [sys.executable, "-m", "sweeps.tracking", "replay", str(pending)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0 and "all calls logged" in out.stdout, out.stderr[-2000:]
        check_nothing_lost(tmp_path, uri, name, 1, epochs=3)
        _, kids = children(MlflowClient(uri), name)
        arts = {a.path for a in MlflowClient(uri).list_artifacts(kids[0].info.run_id)}
        assert {"learning_curves.png", "confusion_matrix.png"} <= arts
    finally:
        stop_mlflow(server)
    report(
        fault="MLflow server SIGKILLed mid-sweep, still down at the end",
        rows_lost=0,
        recover_s=round(time.time() - t0, 1),
        note="sweep finished (rc 0), unlogged calls spooled; time of the replay once back",
    )
