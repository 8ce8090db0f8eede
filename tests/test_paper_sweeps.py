"""The ANet-c6 and Keras-report sweeps end to end (real Ray, real MLflow, tiny data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from test_sweep import sweep_args

from sweeps import anet_generalization, cifar_cnns
from sweeps.flags import build_parser
from sweeps.plan import make_plan
from sweeps.provenance import load_provenance
from sweeps.results import load_results, read_table
from sweeps.runner import main
from trainables.config import ConfigError

REPO = Path(__file__).resolve().parents[1]


def children(uri: str, experiment: str, name: str):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    (parent,) = [r for r in runs if r.info.run_name == name]
    kids = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return client, parent, kids


@pytest.mark.slow
def test_anet_smoke_sweep(ray_local, mlflow_server, tiny_data_root, tmp_path):
    args = sweep_args(tiny_data_root, mlflow_server, tmp_path, "anet-e2e", "--dataset", "mnist")
    assert main(anet_generalization.SWEEP, args) == 0
    out = tmp_path / "res" / "anet_generalization"
    tables = load_results("anet_generalization", tmp_path / "res")
    t2 = tables["table2"]
    assert list(t2[["model", "dataset"]].itertuples(index=False, name=None)) == [
        ("anet_c6", "mnist")
    ]
    row = t2.iloc[0]
    # the published numbers sit beside ours
    assert (row.published_train_acc, row.published_val_acc, row.published_test_acc) == (
        1.0,
        0.983,
        0.984,
    )
    assert 0 <= row.ours_test_acc <= 1
    assert row.delta_test_pp == pytest.approx(100 * (row.ours_test_acc - 0.984))
    assert row.candidates_saved >= 1  # check-and-adjust saved at least its first candidate
    prov = load_provenance(out / "table2.parquet")
    # 90/5/5 of the pooled 500 images
    assert prov["data"]["fractions"] == [0.9, 0.05, 0.05] and prov["data"]["pooled"] == 500
    trials = tables["trials"]
    assert trials.loc[0, "train_rule"] == "check_and_adjust"
    _, parent, kids = children(mlflow_server, "anet_generalization", "anet-e2e")
    assert len(kids) == 1
    params = kids[0].data.params
    assert params["model"] == "anet_c6" and params["batch_size"] == "64"
    assert params["train_rule"] == "check_and_adjust" and params["early_break"] == "True"
    assert kids[0].data.tags["table_row"] == "anet_c6 on mnist"
    assert kids[0].info.run_name == "anet_c6 on mnist"


@pytest.mark.slow
def test_keras_smoke_sweep(ray_local, mlflow_server, tiny_data_root, tmp_path):
    args = sweep_args(tiny_data_root, mlflow_server, tmp_path, "keras-e2e")
    assert main(cifar_cnns.SWEEP, args) == 0
    out = tmp_path / "res" / "cifar_cnns"
    tables = load_results("cifar_cnns", tmp_path / "res")
    assert set(tables) >= {"table3_augmentation", "mnist_simple_cnn", "trials"}
    mnist = tables["mnist_simple_cnn"].iloc[0]
    assert mnist.published_test_acc_pct == 99.37 and mnist.network == "MNIST: Simple CNN"
    t3 = tables["table3_augmentation"].set_index("network")
    # every row of a dataset the sweep ran is in its table; the two not run: ours empty
    assert len(t3) == 8 and t3["ours_test_acc_pct"].notna().sum() == 1
    skipped = t3.loc["VGG blocks + Dropout + augmentation"]
    assert skipped.test_acc_verdict == "not_comparable"
    assert skipped.test_acc_verdict_reason == "budget: this cell did not run in this preset"
    t3 = t3.loc["VGG blocks + Dropout + Batch norm + augmentation"]
    assert t3.augment == "flip_shift"
    assert (t3.published_test_acc_pct, t3.published_without_aug_pct) == (87.11, 84.42)
    # both engines read every table
    for f in out.glob("*.parquet"):
        assert len(read_table(f, "fastparquet")) == len(read_table(f, "pyarrow"))
    # the report's figures for the best model per dataset
    for name in ("cifar10", "mnist"):
        assert (out / f"best_{name}_confusion.png").read_bytes()[:4] == b"\x89PNG"
        assert (out / f"best_{name}_worst_images.png").read_bytes()[:4] == b"\x89PNG"
    trials = tables["trials"]
    worst = json.loads(trials.set_index("dataset").loc["cifar10", "test_worst"])
    assert 1 <= len(worst) <= 25
    confs = [w[3] for w in worst]
    assert confs == sorted(confs, reverse=True) and all(w[1] != w[2] for w in worst)
    client, parent, kids = children(mlflow_server, "cifar_cnns", "keras-e2e")
    assert sorted(k.data.tags["table_row"] for k in kids) == sorted(trials["label"])
    arts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"best_cifar10_worst_images.png", "table3_augmentation.parquet"} <= arts
    kid = next(k for k in kids if k.data.params["dataset"] == "cifar10")
    assert kid.data.params["augment"] == "flip_shift"
    assert {"worst_images.png", "confusion_matrix.png"} <= {
        a.path for a in client.list_artifacts(kid.info.run_id)
    }


def test_cell_filters_and_errors(tmp_path, capsys, tiny_data_root):
    bad = sweep_args(tiny_data_root, "http://127.0.0.1:9", tmp_path, "b", "--dataset", "svhn")
    assert main(anet_generalization.SWEEP, bad) == 2
    err = capsys.readouterr().err
    assert "--dataset svhn: ['svhn'] not allowed; allowed: mnist,cifar10,chromosome_gband" in err


def test_keras_cpu_preset_runs_transfer_rows_only_with_their_weights(tmp_path, monkeypatch):
    """Without ImageNet files a transfer row would train from scratch and be compared with
    transfer learning: the cpu preset leaves it out, says why, and runs the rest."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no library cache either
    monkeypatch.delenv("CNNSWEEP_WEIGHTS_DIR", raising=False)
    sweep = cifar_cnns.SWEEP
    plan = make_plan(sweep, build_parser(sweep).parse_args(["--budget", "cpu"]))
    transfer = {k for k, (_, _, m, _, _) in cifar_cnns.space.ROWS.items() if "transfer" in m}
    assert len(transfer) == 8
    assert set(plan.weights.skipped) == transfer
    assert set(plan.cells) == set(cifar_cnns.space.ROWS) - transfer
    why = plan.weights.skipped["Resnet50 + Adam"]
    assert why.startswith("no_weights: not run") and "cnnsweep weights fetch resnet50" in why
    # asked for explicitly, a from-scratch transfer row still runs (and says so)
    args = build_parser(sweep).parse_args(["--budget", "cpu", "--weights", "scratch"])
    assert len(make_plan(sweep, args).cells) == len(cifar_cnns.space.ROWS)
    # only transfer rows selected and no weights: refused before anything runs
    args = build_parser(sweep).parse_args(["--budget", "cpu", "--models", "vgg19_transfer"])
    with pytest.raises(ConfigError, match="every selected row needs ImageNet weights"):
        make_plan(sweep, args)


def test_keras_tables_keep_rows_not_run_with_their_reason():
    """Table II from trials without its transfer rows: each published row stays, ours
    empty, not_comparable: no_weights; Table I's rows are compared as before."""
    trials = read_table(REPO / "results" / "cifar_cnns" / "trials.parquet", "pyarrow")
    scratch = trials[~trials["model"].str.contains("transfer")]
    tables = cifar_cnns.tables(scratch)
    t2 = tables["table2_transfer"]
    assert list(t2["published_test_acc_pct"]) == [75.52, 80.85, 84.97]
    assert t2["ours_test_acc_pct"].isna().all()
    assert set(t2["verdict"]) == {"not_comparable"}
    assert t2["verdict_reason"].str.startswith("no_weights: not run").all()
    t1 = tables["table1_scratch"].set_index("network")
    assert t1.loc["Simple CNN", "ours_test_acc_pct"] == pytest.approx(
        100 * scratch.set_index("label").loc["Simple CNN", "test_acc"]
    )
    t3 = tables["table3_augmentation"]
    assert len(t3) == 8 and t3["ours_test_acc_pct"].notna().sum() == 3
