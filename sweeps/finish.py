"""After ``Tuner.fit``: test accuracy for every trial, and the figures a person wants.

Trials that ASHA stopped before their own final epoch never ran their test evaluation,
so their last checkpoint (which holds the best-validation weights) is evaluated on the
test split by Ray tasks with the trial's resources: every grid cell gets a test accuracy.
Then each trial's MLflow run gets its learning curves, confusion matrix and worst images.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import ray

from sweeps import plots
from sweeps.ray_cluster import Cluster
from sweeps.tracking import MlflowTrialLogger
from sweeps.trials import best_by_validation, data_keys, display_name
from trainables.data import DataSplits, data_key
from trainables.schema import SUMMARY_METRICS, TEST_METRICS
from trainables.trainable import evaluate_checkpoint

# what the sweep's own test evaluation fills in a trial's row
EVALUATED = (
    *TEST_METRICS,
    "weights_source",
    "weights_sha256",
    "test_per_class_acc",
    "test_worst",
)


@ray.remote
def _final_eval(checkpoint, config: dict, data: dict[str, DataSplits]) -> dict:
    return evaluate_checkpoint(checkpoint, config, data)


def evaluate_stopped(
    trials: pd.DataFrame, confusions: dict, data: dict[str, DataSplits], cluster: Cluster
) -> pd.DataFrame:
    """The trials table with test metrics for early-stopped trials, without the
    checkpoint and config columns :func:`sweeps.trials.collect` added for this."""
    todo = trials.index[trials["test_acc"].isna() & (trials["status"] == "TERMINATED")]
    if len(todo):
        print(f"[test] evaluating {len(todo)} early-stopped trials' best weights", flush=True)
        data_ref = ray.put(data)
        task = _final_eval.options(num_cpus=cluster.cpus_per_trial, num_gpus=cluster.gpus_per_trial)
        refs = {
            i: task.remote(trials.at[i, "_checkpoint"], trials.at[i, "_config"], data_ref)
            for i in todo
        }
        for i, ref in refs.items():
            out = ray.get(ref)
            for k in EVALUATED:
                if k in out:
                    trials.at[i, k] = out[k]
            trials.at[i, "test_evaluated_by"] = "sweep"
            confusions[trials.at[i, "trial_id"]] = json.loads(out["test_confusion"])
    return trials.drop(columns=["_checkpoint", "_config"])


def log_trial_artifacts(
    logger: MlflowTrialLogger,
    trials: pd.DataFrame,
    epochs: pd.DataFrame,
    confusions: dict,
    data: dict[str, DataSplits],
) -> None:
    """Per trial run: learning curves, confusion matrix, worst images, final tags and the
    test metrics the sweep computed (a trial's own report already logged its others)."""
    for row in trials.itertuples():
        if not row.mlflow_run_id:
            continue
        d = data[data_key(row.dataset, row.split if isinstance(row.split, str) else None)]
        with tempfile.TemporaryDirectory() as tmp:
            arts = trial_figures(row, epochs, confusions, d, Path(tmp))
            logger.log_final(
                row.mlflow_run_id,
                final_metrics(row, d) | last_epoch_metrics(row, epochs),
                int(row.epochs_run),
                {
                    "status": row.status,
                    "stop_reason": row.stop_reason,
                    "stopped_early": row.stopped_early,
                    "epochs_run": row.epochs_run,
                    "test_evaluated_by": row.test_evaluated_by,
                    "weights_source": row.weights_source,
                    "weights_sha256": row.weights_sha256,
                },
                arts,
                summary=selected_epoch_metrics(row, epochs),
            )


def trial_figures(
    row, epochs: pd.DataFrame, confusions: dict, d: DataSplits, folder: Path
) -> list[Path]:
    title = display_name(row._asdict())
    arts = []
    ep = epochs[epochs["trial_id"] == row.trial_id]
    if len(ep):
        arts.append(plots.learning_curves_png(ep, title, folder / "learning_curves.png"))
    if row.trial_id in confusions:
        arts.append(
            plots.confusion_matrix_png(
                np.array(confusions[row.trial_id]),
                list(d.classes),
                f"{title}: test confusion (acc {100 * row.test_acc:.2f} %)",
                folder / "confusion_matrix.png",
            )
        )
    if isinstance(row.test_worst, str):
        arts.append(worst_png(row._asdict(), d, title, folder / "worst_images.png"))
    return arts


def final_metrics(row, d: DataSplits) -> dict:
    """Test metrics the sweep evaluated, and per-class accuracy under readable names."""
    metrics = (
        {k: getattr(row, k) for k in TEST_METRICS if pd.notna(getattr(row, k))}
        if row.test_evaluated_by == "sweep"
        else {}
    )
    if isinstance(row.test_per_class_acc, str):
        per_class = json.loads(row.test_per_class_acc)
        metrics |= {
            f"test_acc_class_{c}": v
            for c, v in zip(d.classes, per_class, strict=True)
            if v is not None
        }
    return metrics


def last_epoch_metrics(row, epochs: pd.DataFrame) -> dict:
    """The last epoch's summary metrics under ``last_<name>`` (the plain names become the
    selected epoch's, see :func:`selected_epoch_metrics`)."""
    ep = epochs[epochs["trial_id"] == row.trial_id]
    if ep.empty:
        return {}
    last = ep.loc[ep["epoch"].idxmax()]
    return {f"last_{k}": float(last[k]) for k in SUMMARY_METRICS if pd.notna(last.get(k))}


def selected_epoch_metrics(row, epochs: pd.DataFrame) -> dict:
    """The epoch whose weights were tested (``best_epoch``; the highest val_acc when the
    trial did not say) as ``selected_epoch`` and its summary metrics under their own names.
    Logged one step after the last epoch, as MLflow's Keras autolog logs restored best
    weights, so they are the run's latest values, which the runs table shows."""
    ep = epochs[epochs["trial_id"] == row.trial_id]
    if ep.empty:
        return {}
    best = row.best_epoch if pd.notna(row.best_epoch) else ep.loc[ep["val_acc"].idxmax(), "epoch"]
    sel = ep[ep["epoch"] == int(best)]
    if sel.empty:
        return {}
    sel = sel.iloc[0]
    out = {k: float(sel[k]) for k in SUMMARY_METRICS if pd.notna(sel.get(k))}
    return out | {"selected_epoch": float(best)}


def best_trial_figures(
    trials: pd.DataFrame, confusions: dict, data: dict[str, DataSplits], folder: Path
) -> list[Path]:
    """Per dataset, the trial validation likes best: its test confusion matrix and (when
    the trial reported them) its most confidently wrong test images."""
    out = []
    done = trials[trials["test_acc"].notna()]
    if done.empty:
        return out
    done = done.assign(data=data_keys(done))
    for _, best in best_by_validation(done, "data").iterrows():
        d, name = data[best["data"]], best["data"]
        title = f"best on {name} by validation: {display_name(best)}"
        if best["trial_id"] in confusions:
            out.append(
                plots.confusion_matrix_png(
                    np.array(confusions[best["trial_id"]]),
                    list(d.classes),
                    f"{title}\ntest acc {100 * best['test_acc']:.2f} %",
                    folder / f"best_{name}_confusion.png",
                )
            )
        if isinstance(best.get("test_worst"), str):
            out.append(worst_png(best, d, title, folder / f"best_{name}_worst_images.png"))
    return out


def worst_png(row, d: DataSplits, title: str, path: Path) -> Path:
    worst = np.array(json.loads(row["test_worst"]), dtype=float).reshape(-1, 4)
    idx = worst[:, 0].astype(int)
    return plots.worst_images_png(
        d.test.images[idx],
        worst[:, 1].astype(int),
        worst[:, 2].astype(int),
        worst[:, 3],
        list(d.classes),
        f"{title}: most confidently wrong test images",
        path,
    )
