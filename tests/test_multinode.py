"""Multi-node: a sweep on a head and a second Ray node of this machine.

The cluster is tests/ray_two_nodes.py (two real raylets on 127.0.0.1, 1 CPU each; see
there why not ``ray start --address``), so two 1-CPU trials running at once must run on
different nodes. The sweep's driver is a separate process attached with
``--ray-address``, as a user runs it. Checked: every trial finished, the trials ran on
both nodes (the ``node_id`` each trial reports, against the cluster's), every trial's
checkpoint and results are under the one ``--storage-path`` and none is left in the
nodes' own Ray session dir, one Parquet row and one MLflow child run per trial.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import REPO, ray_env, two_nodes
from test_faults import check_nothing_lost, finish, sweep_cmd, trial_results

from trainables.engine import CHECKPOINT_FILE

pytestmark = pytest.mark.slow
NAME = "two-nodes"


def files_named(root: Path, pattern: str) -> list[Path]:
    return sorted(p for p in root.rglob(pattern) if p.is_file())


def test_sweep_runs_on_both_nodes(tmp_path, mlflow_server, tiny_data_root):
    env = {**ray_env(), "RAY_AUTH_MODE": "disabled"}  # the test harness has no token setup
    with two_nodes(env) as cluster:
        port = int(cluster["address"].rsplit(":", 1)[1])
        cmd = sweep_cmd(NAME, tmp_path, tiny_data_root, mlflow_server, port)
        log = tmp_path / "driver.log"
        driver = subprocess.Popen(
            [*cmd, "--no-asha", "--cpus-per-trial", "1"],
            cwd=REPO,
            env=env,
            stdout=open(log, "a"),  # noqa: SIM115 (closed with the process)
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        finish(driver, log)
        # What the nodes kept in their own Ray session dir (gone when the cluster stops).
        # Tune's driver writes each trial's results there (driver_artifacts) and syncs
        # them to the storage path; checkpoints go from the trial straight to storage.
        session = Path(cluster["temp_dir"])
        ckpts_on_nodes = files_named(session, CHECKPOINT_FILE)
        staged = {p: p.read_text() for p in files_named(session, "result.json")}

    trials, _ = check_nothing_lost(tmp_path, mlflow_server, NAME, 2, epochs=2)

    exp = tmp_path / "ray" / NAME
    results = trial_results(exp)
    assert len(results) == 2, sorted(results)
    node_of = {}
    for folder, rows in results.items():
        assert [r["epoch"] for r in rows] == [1, 2], folder  # one run, never restarted
        assert {r["node_ip"] for r in rows} == {"127.0.0.1"}, folder
        nodes = {r["node_id"] for r in rows}
        assert len(nodes) == 1, (folder, nodes)
        node_of[rows[-1]["trial_id"]] = nodes.pop()
    assert sorted(node_of) == sorted(trials["trial_id"])
    assert sorted(node_of.values()) == sorted(cluster["node_ids"]), "one trial on each node"
    # trials.parquet says where each trial ran
    assert dict(zip(trials["trial_id"], trials["node_id"], strict=True)) == node_of
    assert set(trials["node_ip"]) == {"127.0.0.1"}

    # Checkpoints and results of both nodes' trials: in the one storage path; no
    # checkpoint on a node, and the driver's staged results are what storage holds.
    for folder in results:
        ckpts = files_named(exp / folder, CHECKPOINT_FILE)
        assert len(ckpts) == 1 and ckpts[0].stat().st_size > 0, (folder, ckpts)
        assert ckpts[0].parent.name.startswith("checkpoint_"), ckpts
    assert not ckpts_on_nodes, ckpts_on_nodes
    assert sorted(p.parent.name for p in staged) == sorted(results)
    for path, text in staged.items():
        assert path.parent.parent.name == "driver_artifacts", path
        assert (exp / path.parent.name / "result.json").read_text() == text, path
