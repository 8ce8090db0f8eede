"""End to end against real Ray and a real MLflow server: the smoke sweep's Parquet tables
equal what MLflow recorded, and bad input fails before any trial starts."""

from __future__ import annotations

import json
import math

import optuna
import pandas as pd
import pytest
from conftest import assert_history_matches, free_port
from mlflow.tracking import MlflowClient

from search_spaces.mnist_table1 import published
from sweeps.compare import VERDICTS
from sweeps.importance import importance_metrics
from sweeps.mnist_optimizers import SWEEP
from sweeps.provenance import load_provenance
from sweeps.results import load_results
from sweeps.runner import main


def sweep_args(data_root, uri, tmp_path, name, *extra):
    return [
        "--budget",
        "smoke",
        "--data-root",
        str(data_root),
        "--tracking-uri",
        uri,
        "--results-dir",
        str(tmp_path / "res"),
        "--storage-path",
        str(tmp_path / "ray"),
        "--name",
        name,
        *extra,
    ]


def runs_named(client: MlflowClient, name: str):
    exp = client.get_experiment_by_name("mnist_optimizers")
    if exp is None:
        return None, []
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [
        r for r in runs if r.info.run_name == name and "mlflow.parentRunId" not in r.data.tags
    ]
    assert len(parents) <= 1
    if not parents:
        return None, []
    pid = parents[0].info.run_id
    return parents[0], [r for r in runs if r.data.tags.get("mlflow.parentRunId") == pid]


@pytest.mark.slow
def test_smoke_sweep_parquet_equals_mlflow(
    ray_local, mlflow_server, tiny_data_root, tmp_path, capsys
):
    argv = sweep_args(tiny_data_root, mlflow_server, tmp_path, "e2e")
    assert main(SWEEP, argv) == 0
    out = capsys.readouterr().out
    # Tune's progress table carries the sweep's own columns (the last table: the first
    # ones, printed before any trial reported, show no metric columns yet)
    header = [line for line in out.splitlines() if line.startswith("| Trial name")][-1]
    cols = [c.strip() for c in header.strip("|").split("|")]
    assert cols[3:] == [
        "model",
        "optimizer",
        "lr",
        "epoch",
        "train_loss",
        "val_loss",
        "val_acc",
        "img/s",
    ]
    folder = tmp_path / "res" / "mnist_optimizers"
    arrow = load_results("mnist_optimizers", tmp_path / "res", engine="pyarrow")
    fast = load_results("mnist_optimizers", tmp_path / "res", engine="fastparquet")
    want = {"trials", "epochs", "asha_decisions", "importance", "table1"}
    assert set(arrow) == want == set(fast)
    for name, df in arrow.items():
        assert len(df) == len(fast[name]) and list(df.columns) == list(fast[name].columns)
        for col in df.columns:
            a, b = df[col].astype(object).tolist(), fast[name][col].astype(object).tolist()
            assert [None if pd.isna(x) else x for x in a] == [
                None if pd.isna(x) else x for x in b
            ], (name, col)

    trials, epochs, table = arrow["trials"], arrow["epochs"], arrow["table1"]
    assert len(trials) == 4 and set(trials["status"]) == {"TERMINATED"}
    assert trials["test_acc"].notna().all(), "every trial, stopped early or not, has test_acc"
    assert trials["stopped_early"].any(), "ASHA (grace 1, rf 3, 2 epochs) stops some trial"
    assert (trials.loc[trials["stopped_early"], "epochs_run"] < 2).all()
    # under ASHA the cells start in sweeps.asha.trial_order's order: the first two are
    # each optimizer's usual lr (Tune's own grid order starts with sgd at 0.001)
    first = trials.sort_values("trial_id").head(2)
    pairs = set(zip(first["optimizer"], first["lr"], strict=True))
    assert pairs == {("sgd", 0.01), ("adam", 0.001)}
    folders = sorted(p.name for p in (tmp_path / "ray" / "e2e").glob("train_trial_*"))
    assert len(folders) == 4 and all("model=resnet18,optimizer=" in f for f in folders)
    # ASHA's decisions: a stop for exactly the trials it stopped, each below its cutoff
    dec = arrow["asha_decisions"]
    stops = dec[dec["decision"] == "stop"]
    assert set(stops["trial_id"]) == set(trials.loc[trials["stopped_early"], "trial_id"])
    assert (stops["val_acc"] < stops["cutoff"]).all() and (stops["rung"] == 1).all()
    # ASHA's quorum (by default rf^2 + 1 = 10 records, more than the 4 trials): the one
    # cell Table I does not report (Adam at 0.01) waits at rung 1 for the three published
    # ones, which never wait, and is judged against them, not against an empty rung
    explore = dec[(dec["optimizer"] == "adam") & (dec["lr"] == 0.01)]
    assert explore["records"].tolist() == [3] and explore["cutoff"].notna().all()
    for d in dec.itertuples():  # the value judged is the trial's epoch-1 val_acc
        ep1 = epochs[(epochs["trial_id"] == d.trial_id) & (epochs["epoch"] == d.rung)]
        assert ep1["val_acc"].iloc[0] == d.val_acc

    client = MlflowClient(mlflow_server)
    parent, children = runs_named(client, "e2e")
    assert parent is not None and parent.info.status == "FINISHED"
    assert len(children) == len(trials)
    assert {c.info.run_id for c in children} == set(trials["mlflow_run_id"])
    for child in children:
        rid = child.info.run_id
        assert child.info.status == "FINISHED"
        row = trials[trials["mlflow_run_id"] == rid].iloc[0]
        ep = epochs[epochs["mlflow_run_id"] == rid].sort_values("epoch")
        assert_history_matches(client, rid, ep)
        assert math.isclose(client.get_run(rid).data.metrics["test_acc"], row["test_acc"])
        assert child.data.params["model"] == row["model"]
        assert float(child.data.params["lr"]) == row["lr"]
        assert child.data.tags["stopped_early"] == str(bool(row["stopped_early"]))
        # stopped is not finished: the runs table's stop_reason column, with the epoch
        assert child.data.tags["stop_reason"] == row["stop_reason"]
        want = "ASHA at epoch" if row["stopped_early"] else "finished ("
        assert row["stop_reason"].startswith(want), row["stop_reason"]
        arts = {a.path for a in client.list_artifacts(rid)}
        assert {"learning_curves.png", "confusion_matrix.png"} <= arts
    parent_arts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"table1.parquet", "table1.md", "trials.parquet", "heatmap_test_acc.png"} <= parent_arts
    assert parent.data.tags["budget"] == "smoke" and len(parent.data.tags["data_sha256"]) == 64
    # every published cell of Table I has a verdict, counted on the parent run
    m = parent.data.metrics
    assert m["cells_published"] == 12 == sum(m[f"cells_{v}"] for v in VERDICTS)
    assert m["cells_not_comparable"] >= 8  # smoke: googlenet and vgg16 did not run
    assert parent.data.tags["verdicts"].startswith(f"{int(m['cells_reproduced'])} of 12 published")
    assert table["verdict"].notna().sum() == 12

    # hyperparameter importance: the parent's metrics are importance.parquet's values
    imp = arrow["importance"]
    assert set(imp["evaluator"]) == {"fanova", "ped_anova"}
    assert set(imp["param"]) == {"optimizer", "lr"}  # smoke: one model
    logged = {k: v for k, v in m.items() if k.startswith("importance_")}
    assert logged == pytest.approx(importance_metrics(imp), rel=1e-12)
    assert {f"importance_{r.evaluator}_{r.param}" for r in imp.itertuples()} <= set(logged)
    for ev, g in imp.groupby("evaluator"):
        assert g["importance"].sum() == pytest.approx(1.0, abs=1e-6), ev

    # the Optuna study: one trial per Tune trial, ASHA's stops PRUNED, val_acc per epoch
    study = optuna.load_study(study_name="e2e", storage=f"sqlite:///{tmp_path}/ray/optuna.db")
    by_tune = {t.user_attrs["tune_trial_id"]: t for t in study.trials}
    assert set(by_tune) == set(trials["trial_id"])
    for row in trials.itertuples():
        t = by_tune[row.trial_id]
        assert t.state.name == ("PRUNED" if row.stopped_early else "COMPLETE")
        assert t.value == pytest.approx(row.best_val_acc)
        assert t.params == {"optimizer": row.optimizer, "lr": row.lr}
        mine = epochs[epochs["trial_id"] == row.trial_id].set_index("epoch")["val_acc"]
        assert t.intermediate_values == pytest.approx(mine.to_dict())
        assert t.user_attrs["stop_reason"] == row.stop_reason

    grid = table[table["row"] == "grid"]
    # the 4 cells run, and the paper's other grid cells with the reason they have no ours
    assert len(grid) == 8 and grid["ours_test_acc_pct"].notna().sum() == 4
    not_run = grid[grid["ours_test_acc_pct"].isna()]
    assert set(not_run["model"]) == {"vgg16", "googlenet"}
    assert (not_run["verdict"] == "not_comparable").all()
    grid = grid[grid["ours_test_acc_pct"].notna()]
    merged = grid.merge(trials, on=["model", "optimizer", "lr"])
    assert (merged["ours_test_acc_pct"] == 100 * merged["test_acc"]).all()
    base = table[table["row"] == "paper_no_optimizer"]
    assert len(base) == 6
    pub = {(p["model"], p["optimizer"], p["lr"]): p["published_test_acc_pct"] for p in published()}
    for r in table.itertuples():
        key = (r.model, None if r.row != "grid" else r.optimizer, r.lr)
        if key in pub:
            assert r.published_test_acc_pct == pub[key]
    r18 = base[(base["model"] == "resnet18") & (base["lr"] == 0.001)].iloc[0]
    sgd = grid[(grid["optimizer"] == "sgd") & (grid["lr"] == 0.001)].iloc[0]
    assert r18["compared_with"] == "sgd"
    assert r18["ours_test_acc_pct"] == sgd["ours_test_acc_pct"]
    prov = load_provenance(folder / "table1.parquet")
    assert prov["budget"] == "smoke" and prov["versions"]["torch"] and prov["git_commit"]
    assert prov["data"]["train"] == 256 and prov["hardware"]["cpu_count"] >= 1
    # portable: the data root by its variable's name, never this machine's folder
    assert prov["data"]["source"] == "parquet:$CNNSWEEP_DATA_ROOT/mnist"
    assert str(tiny_data_root) not in json.dumps(prov)


BAD = [
    (["--budget", "nope"], "--budget 'nope' is unknown; allowed: paper, cpu, smoke"),
    (["--models", "resnet19"], "--models resnet19: ['resnet19'] not allowed; allowed:"),
    (["--optimizers", "rmsprop"], "['rmsprop'] not allowed; allowed: sgd,adam"),
    (["--lrs", "-0.1"], "'lr' = -0.1 is invalid; allowed: a number > 0 and <= 1"),
    (["--lrs", "2"], "'lr' = 2.0 is invalid"),
    (["--epochs", "0"], "'epochs' = 0 is invalid; allowed: an integer >= 1"),
    (["--grace-period", "5"], "--grace-period 5: allowed 1..2"),
    (["--reduction-factor", "1"], "--reduction-factor 1.0: allowed >= 2"),
    (["--cpus-per-trial", "0"], "--cpus-per-trial 0"),
    (["--num-samples", "0", "--search", "optuna"], "--num-samples 0: allowed >= 1"),
]


@pytest.mark.parametrize(("extra", "needle"), BAD)
def test_bad_flags_fail_before_anything_runs(extra, needle, tmp_path, capsys, tiny_data_root):
    rc = main(SWEEP, sweep_args(tiny_data_root, "http://127.0.0.1:9", tmp_path, "bad", *extra))
    assert rc == 2
    assert needle in capsys.readouterr().err
    assert not list((tmp_path / "res").rglob("*.parquet"))


def test_unreachable_tracking_server(tmp_path, capsys, tiny_data_root):
    uri = f"http://127.0.0.1:{free_port()}"
    assert main(SWEEP, sweep_args(tiny_data_root, uri, tmp_path, "bad")) == 2
    err = capsys.readouterr().err
    assert uri in err and "not reachable" in err


def test_missing_data_and_unwritable_results(tmp_path, capsys, mlflow_server):
    assert main(SWEEP, sweep_args(tmp_path / "nodata", mlflow_server, tmp_path, "bad")) == 2
    assert "nodata/mnist/MANIFEST.json does not exist" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    args = sweep_args(tmp_path, mlflow_server, tmp_path, "bad")
    args[args.index("--results-dir") + 1] = str(blocker / "sub")
    assert main(SWEEP, args) == 2
    assert "is not writable" in capsys.readouterr().err


def test_non_numeric_lr_is_a_usage_error(tmp_path, tiny_data_root):
    with pytest.raises(SystemExit) as exc:
        main(SWEEP, sweep_args(tiny_data_root, "http://127.0.0.1:9", tmp_path, "b", "--lrs", "x"))
    assert exc.value.code == 2


@pytest.mark.slow
def test_gpu_request_without_gpus_fails_before_trials(
    ray_local, mlflow_server, tiny_data_root, tmp_path, capsys
):
    client = MlflowClient(mlflow_server)
    rc = main(
        SWEEP, sweep_args(tiny_data_root, mlflow_server, tmp_path, "gpu", "--gpus-per-trial", "1")
    )
    assert rc == 2
    assert "--gpus-per-trial 1: the Ray cluster has 0 GPUs" in capsys.readouterr().err
    assert runs_named(client, "gpu") == (None, [])
    assert not list((tmp_path / "res").rglob("*.parquet"))


@pytest.mark.slow
def test_optuna_search_samples_the_lr_range(
    ray_local, mlflow_server, tiny_data_root, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # a silent fallback to ./mlruns would show up here
    rc = main(
        SWEEP,
        sweep_args(
            tiny_data_root,
            mlflow_server,
            tmp_path,
            "optuna",
            "--search",
            "optuna",
            "--num-samples",
            "3",
            "--epochs",
            "1",
            "--optimizers",
            "adam",
            "--momentum",
            "0.5",
        ),
    )
    assert rc == 0
    trials = load_results("mnist_optimizers", tmp_path / "res")["trials"]
    assert len(trials) == 3 and trials["lr"].nunique() == 3
    assert trials["lr"].between(1e-3, 1e-1).all()
    assert set(trials["optimizer"]) == {"adam"} and (trials["momentum"] == 0.5).all()
    assert not (tmp_path / "mlruns").exists()
    _, children = runs_named(MlflowClient(mlflow_server), "optuna")
    assert len(children) == 3
