"""Hyperparameter importance from a trials table, the stop reason, and the study mirror's
bookkeeping on a real SQLite storage (the end-to-end checks are in test_sweep.py,
test_dashboard.py and test_faults.py)."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import optuna
import pandas as pd
import pytest

from sweeps.importance import confounded, importance_metrics, importance_sentence, importance_table
from sweeps.study import StudyMirror
from sweeps.trials import stop_reason


def grid_trials(objective, seeds=(0, 1)) -> pd.DataFrame:
    """A 3 models x 2 optimizers x 4 lrs grid with ``objective(model, optimizer, lr)``."""
    rows = []
    cells = itertools.product(("a", "b", "c"), ("sgd", "adam"), (0.001, 0.003, 0.01, 0.1), seeds)
    for i, (m, o, lr, s) in enumerate(cells):
        rows.append(
            {
                "trial_id": f"t{i}",
                "dataset": "mnist",
                "model": m,
                "optimizer": o,
                "lr": lr,
                "seed": s,
                "status": "TERMINATED",
                "stopped_early": False,
                "best_val_acc": objective(m, o, lr) + 0.001 * s,
            }
        )
    return pd.DataFrame(rows)


def test_the_parameter_that_drives_accuracy_ranks_first_by_both_evaluators():
    t = grid_trials(lambda m, o, lr: 0.9 - 0.1 * abs(np.log10(lr) + 2))  # lr alone matters
    imp = importance_table(t, seeds=3)
    assert set(imp["param"]) == {"model", "optimizer", "lr"}
    for ev, g in imp.groupby("evaluator"):
        assert g["importance"].sum() == pytest.approx(1.0, abs=1e-6)
        top = g.sort_values("rank").iloc[0]
        assert top["param"] == "lr" and top["importance"] > 0.8, (ev, g)
    fan = imp[imp["evaluator"] == "fanova"]
    assert (fan["n_seeds"] == 3).all() and (fan["n_trials"] == len(t)).all()
    assert (fan["importance_min"] <= fan["importance"]).all()
    assert (fan["importance"] <= fan["importance_max"]).all()
    metrics = importance_metrics(imp)
    assert metrics["importance_fanova_lr"] == fan.set_index("param").loc["lr", "importance"]
    assert "importance_fanova_lr_std" in metrics and "importance_ped_anova_lr_std" not in metrics
    assert "fanova" in importance_sentence(imp, t) or "**lr**" in importance_sentence(imp, t)


def test_errored_trials_single_values_and_tiny_sweeps_are_left_out():
    t = grid_trials(lambda m, o, lr: 0.5 + (o == "adam") * 0.3)
    t.loc[t.index[:5], "status"] = "ERROR"
    imp = importance_table(t, seeds=2)
    assert (imp["n_trials"] == len(t) - 5).all()
    only_adam = t[t["optimizer"] == "adam"]  # optimizer no longer varies: not judged
    assert "optimizer" not in set(importance_table(only_adam, seeds=2)["param"])
    assert importance_table(t.head(3), seeds=2).empty  # fewer than MIN_TRIALS
    one = importance_table(t[(t["model"] == "c") & (t["optimizer"] == "sgd")], seeds=2)
    assert set(one["param"]) == {"lr"}
    assert importance_sentence(one, t).startswith("Only **lr** varies")


def test_parameters_that_change_together_are_called_confounded():
    t = pd.DataFrame({"model": ["a", "b", "c", "a"], "augment": ["x", "y", "z", "x"]})
    t["lr"] = [0.1, 0.1, 0.01, 0.01]
    assert confounded(t, ["model", "augment", "lr"]) == [("model", "augment")]


def test_stop_reason_names_what_ended_the_trial_and_when():
    assert stop_reason("TERMINATED", 2, 10) == "ASHA at epoch 2 of 10"
    assert stop_reason("TERMINATED", 10, 10) == "finished (10 epochs)"
    assert stop_reason("TERMINATED", 1, 1) == "finished (1 epoch)"
    assert stop_reason("TERMINATED", 7, 20, "patience") == "patience at epoch 7 of 20"
    assert stop_reason("ERROR", 3, 10) == "error at epoch 3"
    assert stop_reason("ERROR", 0, 10) == "error before epoch 1"


def tune_trial(tid: str, lr: float, epoch: int = 0, val: float = 0.0):
    """What the mirror reads of a Tune trial: its id, config and last result."""
    config = {"model": "resnet18", "optimizer": "sgd", "lr": lr, "epochs": 3}
    config |= {"batch_size": 32, "image_size": 32, "seed": 0, "dataset": "mnist"}
    return SimpleNamespace(trial_id=tid, config=config, last_result={"epoch": epoch})


def test_mirror_writes_one_trial_per_tune_trial_and_a_resumed_driver_adds_none(tmp_path):
    url = f"sqlite:///{tmp_path}/optuna.db"
    dists = {"lr": optuna.distributions.FloatDistribution(0.001, 0.1, log=True)}
    first = StudyMirror(url, "run-1", dists, None)
    a, b = tune_trial("a", 0.01), tune_trial("b", 0.1)
    for t in (a, b):
        first.on_trial_start(0, [], t)
    for epoch, (va, vb) in enumerate([(0.5, 0.2), (0.7, 0.1)], 1):
        first.on_trial_result(0, [], a, {"epoch": epoch, "val_acc": va})
        first.on_trial_result(0, [], b, {"epoch": epoch, "val_acc": vb})
    b.last_result = {"epoch": 2}
    first.on_trial_complete(0, [], b)  # 2 of 3 epochs, no rule: ASHA

    # the driver dies; a new one carries on with trial a, with Tune's saved callback
    # state (ids only: the storage is opened again) or without it
    restored = StudyMirror(url, "run-1", dists, None)
    restored.set_state(first.get_state())
    restored.on_trial_result(0, [], a, {"epoch": 1, "val_acc": 0.5})
    assert restored._warned is False
    second = StudyMirror(url, "run-1", dists, None)
    second.on_trial_start(0, [], a)
    second.on_trial_result(0, [], a, {"epoch": 2, "val_acc": 0.7})  # re-reported
    second.on_trial_result(0, [], a, {"epoch": 3, "val_acc": 0.6})
    a.last_result = {"epoch": 3}
    second.on_trial_complete(0, [], a)
    second.on_trial_complete(0, [], b)  # already final: unchanged

    study = optuna.load_study(study_name="run-1", storage=url)
    got = {t.user_attrs["tune_trial_id"]: t for t in study.trials}
    assert len(study.trials) == 2 and set(got) == {"a", "b"}
    assert got["a"].state.name == "COMPLETE" and got["a"].value == 0.7  # best, not last
    assert got["a"].intermediate_values == {1: 0.5, 2: 0.7, 3: 0.6}
    assert got["a"].user_attrs["stop_reason"] == "finished (3 epochs)"
    assert got["b"].state.name == "PRUNED" and got["b"].value == 0.2
    assert got["b"].user_attrs["stop_reason"] == "ASHA at epoch 2 of 3"
    assert got["a"].params == {"lr": 0.01}


def test_a_storage_that_fails_costs_a_warning_not_the_sweep(tmp_path, capsys):
    (tmp_path / "a-file").write_text("")  # the database's folder cannot be made
    mirror = StudyMirror(f"sqlite:///{tmp_path}/a-file/optuna.db", "run", {}, None)
    mirror.on_trial_start(0, [], tune_trial("a", 0.01))
    mirror.on_trial_result(0, [], tune_trial("a", 0.01), {"epoch": 1, "val_acc": 0.5})
    out = capsys.readouterr().out
    assert out.count("[optuna]") == 1 and "the sweep goes on" in out


def test_reconcile_ends_what_a_killed_driver_left_running_and_adds_what_it_missed(tmp_path):
    url = f"sqlite:///{tmp_path}/optuna.db"
    dists = {"lr": optuna.distributions.FloatDistribution(0.001, 0.1, log=True)}
    old = StudyMirror(url, "run-2", dists, None)
    a = tune_trial("a", 0.01)
    old.on_trial_start(0, [], a)
    old.on_trial_result(0, [], a, {"epoch": 1, "val_acc": 0.4})  # then the driver died
    new = StudyMirror(url, "run-2", dists, None)
    cols = {"model": "resnet18", "optimizer": "sgd", "max_epochs": 3, "seed": 0}
    trials = pd.DataFrame(
        [
            {
                "trial_id": "a",
                "lr": 0.01,
                "status": "TERMINATED",
                "stopped_early": True,
                "best_val_acc": 0.45,
                "stop_reason": "ASHA at epoch 2 of 3",
                **cols,
            },
            {
                "trial_id": "b",
                "lr": 0.1,
                "status": "ERROR",
                "stopped_early": False,
                "best_val_acc": np.nan,
                "stop_reason": "error before epoch 1",
                **cols,
            },
        ]
    )
    epochs = pd.DataFrame({"trial_id": ["a", "a"], "epoch": [1, 2], "val_acc": [0.4, 0.45]})
    new.reconcile(trials, epochs)
    got = {
        t.user_attrs["tune_trial_id"]: t
        for t in optuna.load_study(study_name="run-2", storage=url).trials
    }
    assert set(got) == {"a", "b"}
    assert got["a"].state.name == "PRUNED" and got["a"].value == 0.45
    assert got["a"].intermediate_values == {1: 0.4, 2: 0.45}
    assert got["b"].state.name == "FAIL" and got["b"].params == {"lr": 0.1}
