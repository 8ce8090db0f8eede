"""The trials table: one row per trial, its columns, and the questions every reader asks
of it (which trial is this, which one did validation pick)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from trainables.data import data_key
from trainables.schema import EPOCH_METRICS, TEST_METRICS
from trainables.trainable import resolve_config


def display_name(r, with_seed: bool = False) -> str:
    """A trial as a person reads it: the paper's row label, else ``model / optimizer / lr``;
    ``with_seed`` (sweeps that repeat cells over seeds) adds `` / seed N``."""
    name = r["label"] or f"{r['model']} / {r['optimizer']} / lr {r['lr']:g}"
    return f"{name} / seed {int(r['seed'])}" if with_seed else name


def several_seeds(trials: pd.DataFrame) -> bool:
    """The sweep repeated its cells over seeds (``--seeds N``): names need the seed."""
    return "seed" in trials and trials["seed"].nunique() > 1


def run_name(config: dict, with_seed: bool = False) -> str:
    """A trial's MLflow run name: a grid cell as ``resnet18-adam-lr0.001`` (no spaces or
    slashes, so it reads as one token in the runs list and in URLs' search); a table row
    by its label, which is unique where model/optimizer/lr are not. ``with_seed`` (cells
    repeated over seeds) appends ``-s<seed>``."""
    if config.get("label"):
        name = config["label"]
    else:
        name = f"{config.get('model')}-{config.get('optimizer')}-lr{config.get('lr', 0):.3g}"
    return f"{name}-s{config.get('seed', 0)}" if with_seed else name


def data_keys(trials: pd.DataFrame) -> pd.Series:
    """Per trial, the data it trained and was tested on: its dataset, or ``dataset-split``
    for a leak-free twin (the key of the sweep's loaded data, trainables.data.data_key).
    Trials on different data are never ranked against each other."""
    split = trials["split"] if "split" in trials else pd.Series(None, trials.index, dtype=object)
    return pd.Series(
        [
            data_key(d, s if isinstance(s, str) else None)
            for d, s in zip(trials["dataset"], split, strict=True)
        ],
        index=trials.index,
        dtype=object,
    )


def stop_reason(status: str, epochs_run: int, max_t: int, rule: str | None = None) -> str:
    """Why a trial ended, with the epoch, as its MLflow tag ``stop_reason`` and the report
    say it: ``finished``, ``ASHA`` (ended before its epochs without its own rule firing),
    the trial's stopping rule (e.g. ``patience``), or ``error``."""
    if status == "ERROR":
        return f"error at epoch {epochs_run}" if epochs_run else "error before epoch 1"
    if isinstance(rule, str) and rule:
        return f"{rule} at epoch {epochs_run} of {max_t}"
    if epochs_run < max_t:
        return f"ASHA at epoch {epochs_run} of {max_t}"
    return f"finished ({epochs_run} epoch{'' if epochs_run == 1 else 's'})"


def stopped_by_scheduler(status: str, epochs_run: int, max_t: int, rule=None) -> bool:
    """ASHA stopped it: it ended before its epochs without an error or its own rule."""
    return status == "TERMINATED" and epochs_run < max_t and not rule


def best_by_validation(trials: pd.DataFrame, by: str | list[str] | None = None):
    """The trial validation picks (highest ``best_val_acc``; the first one on a tie), or
    one such trial per group of ``by`` as a DataFrame. Test accuracy never chooses: it
    would leak the test split into the choice."""
    if by is None:
        return trials.loc[trials["best_val_acc"].idxmax()]
    return trials.loc[trials.groupby(by, sort=False)["best_val_acc"].idxmax()]


# ------------------------------------------------------------ from Tune's results


def collect(
    results, trial_paths: dict[str, str], run_ids: dict[str, str], max_epochs: int, cells=None
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """ResultGrid -> (trials table, epochs table, test confusion matrices by trial id).

    ``trial_paths`` and ``run_ids`` come from the MLflow logger: a trial that errored
    before its first report has no ``trial_id`` in its metrics, only its folder."""
    by_path = {v: k for k, v in trial_paths.items()}
    rows, epoch_frames, confusions = [], [], {}
    for res in results:
        last = res.metrics or {}
        tid = last.get("trial_id") or by_path.get(res.path, Path(res.path).name)
        df = res.metrics_dataframe
        df = df if df is not None and len(df) else pd.DataFrame(columns=list(EPOCH_METRICS))
        # A trial restarted from an older checkpoint re-reports epochs; MLflow keeps the
        # first report of each (the logger skips the rest), and so does the table.
        df = df.drop_duplicates("epoch", keep="first").reset_index(drop=True)
        cfg = resolve_config(res.config, cells)
        if "test_confusion" in last:
            confusions[tid] = json.loads(last["test_confusion"])
        rows.append(trial_row(res, tid, cfg, df, run_ids.get(tid), max_epochs))
        if len(df):
            epoch_frames.append(epoch_rows(df, tid, run_ids.get(tid), cfg))
    trials = pd.DataFrame(rows)
    trials["split"] = trials["split"].astype("string")  # all None in most sweeps: not null-typed
    for col in TEST_METRICS:
        trials[col] = pd.to_numeric(trials[col], errors="coerce")
    epochs = (
        pd.concat(epoch_frames, ignore_index=True)
        if epoch_frames
        else pd.DataFrame(columns=["trial_id", *EPOCH_METRICS])
    )
    epochs["epoch"] = epochs["epoch"].astype("int64")
    return trials, epochs, confusions


def trial_row(res, tid: str, cfg: dict, df: pd.DataFrame, run_id, max_epochs: int) -> dict:
    """One row of the trials table: the trial's config, how it ended, its test metrics.
    ``_checkpoint`` and ``_config`` serve the sweep's own test evaluation and are dropped
    before the table is written."""
    last = res.metrics or {}
    epochs_run = int(df["epoch"].max()) if len(df) else 0
    status = "ERROR" if res.error else "TERMINATED"
    max_t = int(cfg.get("epochs", max_epochs))
    return {
        **config_columns(cfg, max_t),
        "status": status,
        "epochs_run": epochs_run,
        # stopped by ASHA: ended before its epochs without a stopping rule firing
        "stopped_early": stopped_by_scheduler(
            status, epochs_run, max_t, last.get("stopped_by_rule")
        ),
        **{k: last.get(k, np.nan) for k in TEST_METRICS},
        "test_per_class_acc": last.get("test_per_class_acc"),
        "weights_source": last.get("weights_source"),
        # the sha256 of the weights file the model started from ("": from scratch)
        "weights_sha256": last.get("weights_sha256"),
        "stopped_by_rule": last.get("stopped_by_rule") or None,
        "stop_reason": stop_reason(status, epochs_run, max_t, last.get("stopped_by_rule")),
        "rule_saves": last.get("rule_saves", np.nan),
        "test_worst": last.get("test_worst"),
        "final_val_acc": float(df["val_acc"].iloc[-1]) if len(df) else np.nan,
        "final_train_acc": float(df["train_acc"].iloc[-1]) if len(df) else np.nan,
        "test_evaluated_by": "trial" if "test_acc" in last else None,
        "wall_s": float(last.get("time_total_s", np.nan)),
        "images_per_s": float(df["images_per_s"].median()) if len(df) else np.nan,
        "mlflow_run_id": run_id,
        # the Ray node of the trial's last report (a trial restarted after its node died
        # moves); node_ip alone cannot tell two nodes of one host apart
        "node_id": last.get("node_id"),
        "node_ip": last.get("node_ip"),
        "error": str(res.error)[:500] if res.error else None,
        "_checkpoint": res.checkpoint,
        "_config": cfg,
        "trial_id": tid,
    }


def config_columns(cfg: dict, max_t: int) -> dict:
    """The trials table's config columns, in their order."""
    return {
        "trial_id": None,  # filled by trial_row; first column of the table
        "label": cfg.get("label", ""),
        "dataset": cfg.get("dataset"),
        "split": cfg.get("split"),  # set only where it differs from the sweep's
        "model": cfg["model"],
        "optimizer": cfg["optimizer"],
        "lr": float(cfg["lr"]),
        "momentum": float(cfg.get("momentum", 0.0)),
        "batch_size": int(cfg["batch_size"]),
        "image_size": int(cfg["image_size"]),
        "max_epochs": max_t,
        "augment": cfg.get("augment", "none"),
        "train_rule": cfg.get("train_rule", "epoch"),
        "seed": int(cfg["seed"]),
    }


def epoch_rows(df: pd.DataFrame, tid: str, run_id, cfg: dict) -> pd.DataFrame:
    """A trial's rows of the epochs table: every epoch metric, with the trial's keys."""
    e = df[[c for c in EPOCH_METRICS if c in df]].copy()
    e["time_this_iter_s"] = df.get("time_this_iter_s")
    e.insert(0, "trial_id", tid)
    e.insert(1, "mlflow_run_id", run_id)
    e.insert(2, "model", cfg["model"])
    e.insert(3, "optimizer", cfg["optimizer"])
    e.insert(4, "config_lr", float(cfg["lr"]))
    return e
