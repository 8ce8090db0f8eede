"""MNIST: VGG-16 / GoogLeNet / ResNet-18 x SGD / Adam x lr, reproducing Table I of paper 003.

Submit to a running Ray head (``make up`` starts one, plus an MLflow server)::

    ray job submit --working-dir . -- python sweeps/mnist_optimizers.py --budget cpu \\
        --data-root "$PWD/../shared/data" --results-dir "$PWD/results"

or run it directly (starts a private Ray instance): ``python sweeps/mnist_optimizers.py``.

Budgets:
  paper  the paper's setup: ImageNet weights fine-tuned (the paper most likely did; see
         TABLE1's notes and the README), 224 px RGB, 10 epochs, batch 32, all 60k-6k
         train images, the full 10k test set; 3 seeds per cell; one GPU per trial.
  cpu    <= 30 min on 2 CPU cores, the published GoogLeNet / ResNet-18 cells first: from
         scratch (no ImageNet weights of these models here), 32 px, one pass over 36,000
         unique train images (more accuracy per minute than repeated epochs over fewer,
         bench/mnist_cpu_preset.py), 1,000 val, the full 10k test split, lr 0.001 / 0.01,
         3 seeds, 2 trials at a time with 1 thread each. VGG-16 is left out: from scratch
         it stays at chance, and its cells are not comparable without ImageNet weights.
  smoke  <= 2 min, for tests: ResNet-18 only, 2 epochs of 256 images.
"""

from __future__ import annotations

import sys

import pandas as pd

from search_spaces import mnist_table1 as space
from search_spaces import published_notes
from sweeps.compare import Comparison, Pair
from sweeps.runner import main
from sweeps.sweep import Budget, sweep_def

ACC = "test accuracy (%)"

BUDGETS = {
    # The paper fine-tuned ImageNet weights (see TABLE1's notes); 3 seeds measure the
    # tolerance of each cell's verdict.
    "paper": Budget(
        "paper",
        "the paper's setup (GPU)",
        epochs=10,
        image_size=224,
        num_samples=30,
        seeds=3,
        weights="imagenet",
    ),
    # The published cells first: VGG-16 is left out (its cells are not comparable without
    # ImageNet weights, and it would take both cores for a third of the budget at chance),
    # lr 0.1 too (no paper reports it). One pass over unique images beats repeated epochs
    # over a subset (bench/mnist_cpu_preset.py, README); the full 10k test split.
    "cpu": Budget(
        "cpu",
        "2 CPU cores, <= 30 min",
        epochs=1,
        image_size=32,
        train_limit=36000,  # ~24 min for the 24 trials (bench/mnist_cpu_preset.py)
        val_limit=1000,
        models=("googlenet", "resnet18"),
        lrs=(0.001, 0.01),
        seeds=3,
        num_samples=18,
        expected_gap="from scratch (no ImageNet weights here), 32 px, 36k of 54k train "
        "images, 1 of 10 epochs",
    ),
    "smoke": Budget(
        "smoke",
        "tests, <= 2 min",
        epochs=2,
        image_size=32,
        train_limit=256,
        val_limit=128,
        test_limit=128,
        models=("resnet18",),
        lrs=(0.001, 0.01),
        num_samples=4,
    ),
}


# The paper's rows that name no optimizer are its baselines. Decided before any run: they
# are compared with our plain SGD (no momentum) at the same lr. The paper's only stated
# optimizer setting is SGD (III-C: "SGD is also used ..."), its further work proposes
# momentum as new, and its VGG-16 baseline equals its "with SGD" row (99.1 at lr 0.001).
BASELINE_OPTIMIZER = "sgd"
# Models whose from-scratch result says nothing about the paper's fine-tuned one: without
# batch norm, VGG-16 with plain SGD at lr <= 0.01 does not leave chance within the budget
# (the committed cpu run of 2026-11: 10-19 % in all six cells). GoogLeNet and ResNet-18
# have batch norm and reach the paper's range from scratch, so they are compared.
NEEDS_WEIGHTS = {
    "vgg16": "no_weights: VGG-16 (no batch norm) stays near chance from scratch with "
    "plain SGD; the paper fine-tuned ImageNet weights, and none can be had here",
}
TABLE1 = Comparison(
    ids=("model", "optimizer", "lr", "row"),
    pairs=(
        Pair(
            "published_test_acc_pct",
            "ours_test_acc_pct",
            ACC,
            delta="delta_pp",
            std="ours_test_acc_std_pp",
            n="n_seeds",
        ),
    ),
    notes=(
        *published_notes(space.PUBLISHED_CSV),
        "Accuracies in percent; ours = the mean over seeds (n_seeds) of the test accuracy of "
        "each trial's best-validation epoch, on the full 10,000-image test split; delta = "
        "ours - published, in percentage points. Tolerance = max(1 pp, 2 x the std over "
        "seeds).",
        f"Rows 'paper_no_optimizer' are the paper's baseline rows, which name no optimizer; "
        f"decided before the run, they are compared with our {BASELINE_OPTIMIZER.upper()} "
        "(plain, no momentum) at the same lr (column compared_with).",
        "The paper most likely fine-tuned ImageNet weights (see the README): its further "
        "work proposes 'random initialisation' as new, VGG-16 without batch norm reaches "
        "99.1 % in 10 epochs of plain SGD at lr 0.001, and lr 0.001 beats 0.01 for every "
        "model. The `paper` preset does the same; the `cpu` preset trains from scratch "
        "(no ImageNet weights of these models can be had here).",
    ),
    headline=ACC,
)
COMPARISONS = {"table1": TABLE1}
COLUMNS = ["row", "model", "optimizer", "lr", "published_test_acc_pct", "ours_test_acc_pct"]
COLUMNS += ["ours_test_acc_std_pp", "n_seeds", "compared_with", "weights", "not_comparable"]
COLUMNS += ["epochs_run", "stopped_early"]


def table1(trials: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Table I: every grid cell, the paper's number beside it where it has one, plus its
    six rows that name no optimizer, each beside our BASELINE_OPTIMIZER cell at that lr.
    Ours is the mean over seeds, with its std and n."""
    cells = seed_stats(trials[trials["status"] == "TERMINATED"])
    pub = pd.DataFrame(space.published())
    grid = cells.merge(
        pub.dropna(subset=["optimizer"]), how="outer", on=["model", "optimizer", "lr"]
    )
    grid.insert(0, "row", "grid")
    grid["compared_with"] = grid["optimizer"]
    base = pub[pub["optimizer"].isna()].drop(columns="optimizer")
    base = base.merge(
        cells[cells["optimizer"] == BASELINE_OPTIMIZER].drop(columns="optimizer"),
        how="left",
        on=["model", "lr"],
    )
    base.insert(0, "row", "paper_no_optimizer")
    base.insert(2, "optimizer", "(not named)")
    base["compared_with"] = BASELINE_OPTIMIZER
    table = pd.concat([grid, base], ignore_index=True)
    table["not_comparable"] = [
        NEEDS_WEIGHTS.get(m) if w in (None, "scratch") or pd.isna(w) else None
        for m, w in zip(table["model"], table["weights"], strict=True)
    ]
    rank = {v: i for i, v in enumerate((*space.MODELS, *space.OPTIMIZERS, "(not named)"))}
    table = table.sort_values(
        ["row", "model", "optimizer", "lr"],
        key=lambda s: s.map(rank) if s.name in ("model", "optimizer") else s,
    ).reset_index(drop=True)
    table = table.astype({"n_seeds": "Int64", "epochs_run": "Int64", "stopped_early": "boolean"})
    table = table.astype({"not_comparable": "string", "weights": "string"})
    return {"table1": TABLE1.apply(table[COLUMNS])}


def seed_stats(trials: pd.DataFrame) -> pd.DataFrame:
    """Per (model, optimizer, lr): test accuracy's mean and std over seeds (percent), the
    number of seeds, the most epochs run, whether ASHA stopped any, the weights it
    started from ('scratch' or the file)."""
    t = trials.assign(acc=100 * trials["test_acc"])
    weights = t["weights_source"] if "weights_source" in t else pd.Series("scratch", t.index)
    t = t.assign(weights=weights.fillna("scratch").astype(str).str.split(" ").str[0])
    out = t.groupby(["model", "optimizer", "lr"]).agg(
        ours_test_acc_pct=("acc", "mean"),
        ours_test_acc_std_pp=("acc", "std"),
        n_seeds=("acc", "count"),
        epochs_run=("epochs_run", "max"),
        stopped_early=("stopped_early", "any"),
        weights=("weights", "first"),
    )
    return out.reset_index()


def published_cell(config: dict) -> bool:
    """Table I reports this cell: a row that names its optimizer, or a baseline row (which
    names none) at this lr when the optimizer is BASELINE_OPTIMIZER."""
    key = (config["model"], config["optimizer"], float(config["lr"]))
    return key in {
        (r["model"], r["optimizer"] or BASELINE_OPTIMIZER, r["lr"]) for r in space.published()
    }


SWEEP = sweep_def(
    space,
    name="mnist_optimizers",
    dataset="mnist",
    budgets=BUDGETS,
    make_tables=table1,
    published_cell=published_cell,
)

if __name__ == "__main__":
    sys.exit(main(SWEEP, doc=__doc__))
