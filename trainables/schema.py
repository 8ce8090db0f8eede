"""Every metric a trial reports, defined once.

The same name is the key of ``tune.report``, the MLflow metric, the Parquet column and
ASHA's metric (one name per metric everywhere). Adding a metric is one :class:`Metric`
here plus the code in the engine that computes it: the trainable's report, the MLflow
logger, the trials and epochs tables, Tune's progress table and the report's labels are
all read from :data:`METRICS`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    name: str
    # "epoch": reported every epoch (the epochs table, MLflow history);
    # "test": once, for the selected weights (a trials-table column, one MLflow value);
    # "json": once, a JSON string (Tune's result flattening keeps it one value)
    when: str
    label: str = ""  # axis and header text in the report; "" = the name
    progress: str | None = None  # column header in Tune's progress table; None = not shown


METRICS = (
    Metric("epoch", "epoch", "epoch", progress="epoch"),
    Metric("train_loss", "epoch", "training loss", progress="train_loss"),
    Metric("train_acc", "epoch", "training accuracy (%)"),
    Metric("val_loss", "epoch", "validation loss", progress="val_loss"),
    Metric("val_acc", "epoch", "validation accuracy (%)", progress="val_acc"),
    Metric("lr", "epoch", "learning rate"),
    Metric("images_per_s", "epoch", "training images per second", progress="img/s"),
    Metric("step", "epoch", "optimizer steps"),
    Metric("gpu_mem_peak_mb", "epoch", "peak GPU memory (MiB)"),  # GPU trials only
    Metric("gpu_util_pct", "epoch", "GPU utilisation (%)"),  # GPU trials with pynvml only
    Metric("test_loss", "test", "test loss"),
    Metric("test_acc", "test", "test accuracy (%)"),
    Metric("test_macro_precision", "test", "macro precision (%)"),
    Metric("test_macro_sensitivity", "test", "macro sensitivity (%)"),
    Metric("test_macro_specificity", "test", "macro specificity (%)"),
    Metric("test_macro_f1", "test", "macro F1 (%)"),
    Metric("best_epoch", "test", "epoch of the selected weights"),
    Metric("best_val_acc", "test", "validation accuracy of the selected weights (%)"),
    Metric("inference_s_per_1000_b1", "test", "inference, batch 1 (s per 1,000 images)"),
    Metric("inference_s_per_1000_batched", "test", "inference, batched (s per 1,000 images)"),
    Metric("test_confusion", "json"),
    Metric("test_per_class_acc", "json"),
    Metric("test_worst", "json"),  # [test index, true, predicted, confidence] rows
)

EPOCH_METRICS = tuple(m.name for m in METRICS if m.when == "epoch")
TEST_METRICS = tuple(m.name for m in METRICS if m.when == "test")
TEST_JSON = tuple(m.name for m in METRICS if m.when == "json")
PROGRESS_COLUMNS = {m.name: m.progress for m in METRICS if m.progress}
LABELS = {m.name: m.label or m.name for m in METRICS}

# The metric ASHA, Optuna and "the best trial" judge by, and its direction.
METRIC, MODE = "val_acc", "max"

# What a trial's MLflow run shows under these names after the sweep: the selected epoch's
# values (the weights it was tested with); the last epoch's go under ``last_<name>``.
SUMMARY_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc")
