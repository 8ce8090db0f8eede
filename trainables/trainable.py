"""The one Ray Tune trainable every sweep uses: config in, one ``tune.report`` per epoch out.

The engine does the work; this file only wires it to Tune: validate the config, resume
from ``tune.get_checkpoint()``, checkpoint every epoch, and on the last epoch (or when
the patience rule stops the run) evaluate the selected weights on the test split. A
trial that ASHA stops early never reaches that point; the sweep evaluates its checkpoint
afterwards with :func:`evaluate_checkpoint`, the same code path.
"""

from __future__ import annotations

import json
import tempfile

import numpy as np
import ray
from ray import tune

from trainables import metrics as M
from trainables.config import TrialConfig
from trainables.data import DataSplits, data_key
from trainables.engine import Run, load_checkpoint, save_checkpoint
from trainables.progress import EpochBar

INFERENCE_BATCH = 32


def test_metrics(run: Run) -> dict:
    """Test-split metrics of the selected weights (plus inference timing when configured)."""
    res = run.test_best(predictions=run.cfg.report_worst > 0)
    out = {
        "test_loss": res.loss,
        "test_acc": res.acc,
        "best_epoch": run.best_epoch,
        "best_val_acc": run.best_val_acc,
    }
    out |= {
        f"test_{k}": v
        for k, v in M.classification_metrics(res.confusion).items()
        if k != "accuracy"
    }
    per_class = M.per_class_accuracy(res.confusion)
    out["test_confusion"] = json.dumps(res.confusion.tolist())
    out["test_per_class_acc"] = json.dumps([None if v != v else float(v) for v in per_class])
    out["weights_source"] = getattr(run.model, "weights_source", "scratch")
    out["weights_sha256"] = getattr(run.model, "weights_sha256", None) or ""
    if res.pred is not None:
        out["test_worst"] = json.dumps(worst_predictions(run, res))
    if run.cfg.measure_inference:
        shape = (1, run.cfg.in_channels, run.cfg.image_size, run.cfg.image_size)
        for key, bs in (("b1", 1), ("batched", INFERENCE_BATCH)):
            out[f"inference_s_per_1000_{key}"] = M.inference_seconds_per_1000(
                run.model, shape, batch_size=bs, device=run.device
            )
    return out


def worst_predictions(run: Run, res) -> list[list]:
    """The ``report_worst`` wrong test predictions with the highest confidence, as
    [test index, true class, predicted class, confidence] (the Keras report's Fig. 12)."""
    y = run.data.test.labels
    wrong = np.flatnonzero(res.pred != y)
    order = wrong[np.argsort(-res.confidence[wrong], kind="stable")][: run.cfg.report_worst]
    return [[int(i), int(y[i]), int(res.pred[i]), float(res.confidence[i])] for i in order]


def resolve_config(config: dict, cells: dict[str, dict] | None) -> dict:
    """A trial's full config: sweeps of fixed table rows ("cells") put only the row's
    label (and, under Optuna, a sampled lr) in Tune's config; the row supplies the rest."""
    if cells and config.get("label") in cells:
        return {**cells[config["label"]], **config}
    return dict(config)


def make_run(
    config: dict, data: DataSplits | dict[str, DataSplits], cells: dict[str, dict] | None
) -> Run:
    """The validated config and its dataset (a sweep may hold several) -> a fresh Run."""
    cfg = TrialConfig.from_dict(resolve_config(config, cells))
    if isinstance(data, dict):
        key = data_key(cfg.dataset, cfg.split)
        if key not in data:
            raise ValueError(f"dataset {key!r} is not loaded; loaded: {', '.join(data)}")
        data = data[key]
    return Run(cfg, data)


def train_trial(
    config: dict,
    data: DataSplits | dict[str, DataSplits],
    cells: dict[str, dict] | None = None,
    progress: str = "bar",
) -> None:
    """Tune function trainable; ``data`` arrives once per node through the object store.
    ``progress``: how long epochs show their progress (``trainables.progress.STYLES``);
    the driver picks it, since only it knows whether its output is a terminal."""
    run = make_run(config, data, cells)
    cfg = run.cfg
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            run.load_state_dict(load_checkpoint(folder))
    trial = tune.get_context().get_trial_name() or "trial"
    while run.epoch < cfg.epochs and not run.early_stopped:
        bar = EpochBar(
            f"{trial} epoch {run.epoch + 1}/{cfg.epochs}",
            total=len(run.train_xy[1]),
            style=progress,
        )
        metrics = run.train_epoch(progress=bar)
        if run.epoch == cfg.epochs or run.early_stopped:
            metrics.update(test_metrics(run))
            metrics["stopped_by_rule"] = run.stop_reason
            metrics["rule_saves"] = run.saves
        # which Ray node ran this epoch (Tune adds node_ip, the same for nodes on one host)
        metrics["node_id"] = ray.get_runtime_context().get_node_id()
        with tempfile.TemporaryDirectory() as folder:
            save_checkpoint(run, folder)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def evaluate_checkpoint(
    checkpoint: tune.Checkpoint,
    config: dict,
    data: DataSplits | dict[str, DataSplits],
    cells: dict[str, dict] | None = None,
) -> dict:
    """Test metrics of a trial's selected weights, from its last checkpoint."""
    run = make_run(config, data, cells)
    with checkpoint.as_directory() as folder:
        run.load_state_dict(load_checkpoint(folder))
    return test_metrics(run)
