"""The one Ray Tune trainable every sweep uses: config in, one ``tune.report`` per epoch out.

The engine does the work; this file only wires it to Tune: validate the config, resume
from ``tune.get_checkpoint()``, checkpoint every epoch, and on the last epoch evaluate
the best-validation weights on the test split. A trial that ASHA stops early never
reaches that point; the sweep evaluates its checkpoint afterwards with
:func:`evaluate_checkpoint`, the same code path.
"""

from __future__ import annotations

import json
import tempfile

from ray import tune

from trainables.config import TrialConfig
from trainables.datasets import DataSplits
from trainables.engine import Run, load_checkpoint, save_checkpoint

# Every name a trial reports, in order; the same names are MLflow metric keys and
# Parquet columns (one name per metric everywhere).
EPOCH_METRICS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "images_per_s")
TEST_METRICS = ("test_loss", "test_acc", "best_epoch", "best_val_acc")


def test_metrics(run: Run) -> dict:
    res = run.test_best()
    return {
        "test_loss": res.loss,
        "test_acc": res.acc,
        "best_epoch": run.best_epoch,
        "best_val_acc": run.best_val_acc,
        # A JSON string, so Tune's flattening leaves it as one value.
        "test_confusion": json.dumps(res.confusion.tolist()),
    }


def train_trial(config: dict, data: DataSplits) -> None:
    """Tune function trainable; ``data`` arrives once per node through the object store."""
    cfg = TrialConfig.from_dict(config)
    run = Run(cfg, data)
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            run.load_state_dict(load_checkpoint(folder))
    while run.epoch < cfg.epochs:
        metrics = run.train_epoch()
        if run.epoch == cfg.epochs:
            metrics.update(test_metrics(run))
        with tempfile.TemporaryDirectory() as folder:
            save_checkpoint(run, folder)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def evaluate_checkpoint(checkpoint: tune.Checkpoint, config: dict, data: DataSplits) -> dict:
    """Test metrics of a trial's best-validation weights, from its last checkpoint."""
    cfg = TrialConfig.from_dict(config)
    run = Run(cfg, data)
    with checkpoint.as_directory() as folder:
        run.load_state_dict(load_checkpoint(folder))
    return test_metrics(run)
