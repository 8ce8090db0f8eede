"""Chromosomes: the eight ChromosomeNet baselines x optimizer x lr, beside paper 004's tables.

Submit to a running Ray head (``make up``)::

    ray job submit --working-dir . -- python sweeps/chromosome_baselines.py --budget cpu \\
        --dataset chromosome_gband --data-root "$PWD/../shared/data" --results-dir "$PWD/results"

Own data laid out as ChromosomeNet ships it (24 class folders, images of any size)::

    python sweeps/chromosome_baselines.py --budget cpu --data /path/to/folders --split random

Recipe (all budgets, the paper's): ImageNet weights where they can be had (else from
scratch, recorded), 1cycle lr, label-smoothing 0.1 cross-entropy, batch 32, stop when
val_loss has not fallen for 5 epochs, the lowest-val_loss weights tested. Images keep
aspect ratio and relative size (centred on a common canvas), grey repeated to 3 channels.
Splits 80/10/10, stratified by class and grouped by case (``--split random``: by image).

Budgets:
  paper  224 px, up to 500 epochs (patience 5), the full grid, 1 GPU per trial.
  cpu    <= 60 min on 2 cores: 64 px, Adam lr 1e-3 only, 3 epochs (so patience can't
         fire), stratified 3,600 train / 720 val images, the whole test split, one trial
         per model and no ASHA (every model trains as long, so the table compares them).
  smoke  tests: MobileNetV2 and ResNet-50, 1 epoch of 96 images at 32 px.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd

from search_spaces import chromosomenet as space
from search_spaces import published_notes
from sweeps.runner import Budget, main, sweep_def
from trainables.chromosomes import CHROMOSOME_CLASSES
from trainables.metrics import count_gflops, count_params, quartiles
from trainables.models import build_model

BUDGETS = {
    "paper": Budget("paper", "the paper's setup (GPU)", epochs=500, image_size=224, num_samples=64),
    "cpu": Budget(
        "cpu",
        "2 CPU cores, <= 60 min",
        epochs=3,
        image_size=64,
        train_limit=3600,
        val_limit=720,
        optimizers=("adam",),
        lrs=(1e-3,),
        num_samples=8,
        asha=False,
        expected_gap="64 px, 3.6k of ~22k train images, 3 epochs, no ImageNet weights",
        channels_last=True,  # bench/cpu_packing.py: faster for the sweep as a whole
    ),
    "smoke": Budget(
        "smoke",
        "tests",
        epochs=1,
        image_size=32,
        train_limit=96,
        val_limit=48,
        test_limit=48,
        models=("mobilenet_v2", "resnet50"),
        optimizers=("adam",),
        lrs=(1e-3,),
        num_samples=2,
    ),
}
METRICS = {
    "precision": "test_macro_precision",
    "accuracy": "test_acc",
    "f1": "test_macro_f1",
    "sensitivity": "test_macro_sensitivity",
    "specificity": "test_macro_specificity",
}
STATS = ("min", "q1", "median", "q3", "iqr", "max")


def pick_per_model(trials: pd.DataFrame) -> pd.DataFrame:
    """Per model, the finished trial validation likes best (never chosen on test)."""
    done = trials[(trials["status"] == "TERMINATED") & trials["test_acc"].notna()]
    idx = done.groupby("model")["best_val_acc"].idxmax()
    order = {m: i for i, m in enumerate(space.MODELS)}
    return done.loc[idx].sort_values("model", key=lambda s: s.map(order))


def tables(trials: pd.DataFrame) -> dict[str, pd.DataFrame]:
    pub2, pub3, pub4 = space.table2(), space.table3(), space.table4()
    best = pick_per_model(trials)
    t1, t2, t3, t4 = [], [], [], []
    for r in best.itertuples():
        m, size = r.model, int(r.image_size)
        net = build_model(m, num_classes=len(CHROMOSOME_CLASSES), image_size=size)
        gf224 = count_gflops(build_model(m, num_classes=24, image_size=224), (1, 3, 224, 224))
        t1.append(
            {
                "model": m,
                "published_params_m": pub2[m]["params_m"],
                "ours_params_m": count_params(net) / 1e6,
                "published_gflops": pub2[m]["gflops"],
                "ours_gflops_224px": gf224,
                "ours_gflops_at_input": count_gflops(net, (1, 3, size, size)),
                "input_px": size,
            }
        )
        row = {
            "model": m,
            "trial_id": r.trial_id,
            "optimizer": r.optimizer,
            "lr": r.lr,
            "epochs_run": r.epochs_run,
            "weights": r.weights_source,
        }
        for name, col in METRICS.items():
            ours = 100 * getattr(r, col)
            row |= {
                f"published_{name}": pub2[m][name],
                f"ours_{name}": ours,
                f"delta_{name}_pp": ours - pub2[m][name],
            }
        row |= {
            "published_inference_s_per_1000": pub2[m]["inference_s_per_1000"],
            "ours_inference_s_per_1000_b1": r.inference_s_per_1000_b1,
            "ours_inference_s_per_1000_batched": r.inference_s_per_1000_batched,
        }
        t2.append(row)
        per_class = 100 * np.array(json.loads(r.test_per_class_acc), dtype=float)
        for cls, ours in zip(
            (*CHROMOSOME_CLASSES, "avg"), (*per_class, np.nanmean(per_class)), strict=True
        ):
            pub = pub3[m][cls]
            t3.append(
                {
                    "model": m,
                    "class": cls,
                    "published_acc_pct": pub,
                    "ours_acc_pct": ours,
                    "delta_pp": ours - pub,
                }
            )
        q = quartiles(per_class)
        t4.append(
            {
                "model": m,
                **{f"published_{k}": pub4[m][k] for k in STATS},
                **{f"ours_{k}": q[k] for k in STATS},
            }
        )
    out = {
        "table2_metrics": pd.DataFrame(t2),
        "table1_models": pd.DataFrame(t1),
        "table3_per_class": pd.DataFrame(t3),
        "table4_quartiles": pd.DataFrame(t4),
    }
    notes = [
        *published_notes(space.TABLE2_CSV),
        "Ours: standard macro definitions; specificity = mean over classes of "
        "TN/(TN+FP). The paper's formula is TN/(TP+TN), and its macro F1 exceeds both "
        "macro precision and macro sensitivity for baselines 1-5, which the harmonic "
        "mean cannot do: compare F1 and specificity with that in mind.",
        "Per model, the trial with the highest validation accuracy at its selected "
        "epoch; percentages; delta = ours - published in percentage points.",
        "Per-class accuracy = correct / images of that class (per-class recall).",
    ]
    for df in out.values():
        df.attrs["notes"] = notes
    return out


SWEEP = sweep_def(
    space,
    name="chromosome_baselines",
    dataset="chromosome_gband",
    budgets=BUDGETS,
    make_tables=tables,
    fixed_config=dict(space.RECIPE),
)

if __name__ == "__main__":
    sys.exit(main(SWEEP, doc=__doc__))
