"""MNIST: VGG-16 / GoogLeNet / ResNet-18 x SGD / Adam x lr, reproducing Table I of paper 003.

Submit to a running Ray head (``make up`` starts one, plus an MLflow server)::

    ray job submit --working-dir . -- python sweeps/mnist_optimizers.py --budget cpu \\
        --data-root "$PWD/../shared/data" --results-dir "$PWD/results"

or run it directly (starts a private Ray instance): ``python sweeps/mnist_optimizers.py``.

Budgets:
  paper  the paper's setup: 224 px RGB, 10 epochs, batch 32, all 60k-6k train images,
         the full 10k test set; one GPU per trial.
  cpu    <= 30 min on 2 CPU cores: 32 px (the small-input VGG head), 3 epochs over a
         stratified 4,000-image train subset, 1,000 val, 2,000 test images, 2 trials at a
         time with 1 thread each. Expect lower accuracy than the paper, most for plain
         SGD at lr 0.001 (about 60x fewer optimizer steps).
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
    "paper": Budget("paper", "the paper's setup (GPU)", epochs=10, image_size=224, num_samples=30),
    "cpu": Budget(
        "cpu",
        "2 CPU cores, <= 30 min",
        epochs=3,
        image_size=32,
        train_limit=4000,
        val_limit=1000,
        test_limit=2000,
        num_samples=18,
        expected_gap="32 px inputs, 4k of 54k train images, 3 of 10 epochs",
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


TABLE1 = Comparison(
    ids=("model", "optimizer", "lr", "row"),
    pairs=(
        Pair("published_test_acc_pct", "ours_test_acc_pct", ACC, delta="delta_pp"),
        # the paper's rows that name no optimizer, beside our SGD and our Adam
        *(
            Pair(
                "published_test_acc_pct",
                f"ours_{o}_test_acc_pct",
                ACC,
                delta=f"delta_{o}_pp",
                variant=o,
            )
            for o in ("sgd", "adam")
        ),
    ),
    notes=(
        *published_notes(space.PUBLISHED_CSV),
        "Accuracies in percent; delta = ours - published, in percentage points.",
        "Rows 'paper_no_optimizer' are the paper's baseline rows, which name no optimizer; "
        "they are shown beside our SGD and our Adam result at the same lr.",
    ),
    headline=ACC,
)
COMPARISONS = {"table1": TABLE1}
COLUMNS = ["row", "model", "optimizer", "lr", "published_test_acc_pct", "ours_test_acc_pct"]
COLUMNS += ["ours_sgd_test_acc_pct", "ours_adam_test_acc_pct", "epochs_run", "stopped_early"]


def table1(trials: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Table I: all grid cells with the paper's number where it has one, plus its six rows
    that name no optimizer, each shown beside our SGD and our Adam result at that lr."""
    ours = trials[trials["status"] == "TERMINATED"].groupby(["model", "optimizer", "lr"])
    cells = ours.agg(
        ours_test_acc_pct=("test_acc", "max"),
        epochs_run=("epochs_run", "max"),
        stopped_early=("stopped_early", "all"),
    ).reset_index()
    cells["ours_test_acc_pct"] *= 100
    pub = pd.DataFrame(space.published())
    grid = cells.merge(
        pub.dropna(subset=["optimizer"]), how="left", on=["model", "optimizer", "lr"]
    )
    grid.insert(0, "row", "grid")
    table = pd.concat([grid, baseline_rows(pub, cells)], ignore_index=True)
    for opt in ("sgd", "adam"):
        if f"ours_{opt}_test_acc_pct" not in table:
            table[f"ours_{opt}_test_acc_pct"] = float("nan")
    rank = {v: i for i, v in enumerate((*space.MODELS, *space.OPTIMIZERS, "(not named)"))}
    table = table.sort_values(
        ["row", "model", "optimizer", "lr"],
        key=lambda s: s.map(rank) if s.name in ("model", "optimizer") else s,
    ).reset_index(drop=True)
    table["epochs_run"] = table["epochs_run"].astype("Int64")
    table["stopped_early"] = table["stopped_early"].astype("boolean")
    return {"table1": TABLE1.apply(table[COLUMNS])}


def baseline_rows(pub: pd.DataFrame, cells: pd.DataFrame) -> pd.DataFrame:
    """The paper's rows without an optimizer, with our SGD and our Adam result at that lr."""
    base = pub[pub["optimizer"].isna()].drop(columns="optimizer")
    for opt in ("sgd", "adam"):
        o = cells[cells["optimizer"] == opt][["model", "lr", "ours_test_acc_pct"]]
        base = base.merge(
            o.rename(columns={"ours_test_acc_pct": f"ours_{opt}_test_acc_pct"}),
            how="left",
            on=["model", "lr"],
        )
    base.insert(0, "row", "paper_no_optimizer")
    base.insert(2, "optimizer", "(not named)")
    return base


SWEEP = sweep_def(
    space, name="mnist_optimizers", dataset="mnist", budgets=BUDGETS, make_tables=table1
)

if __name__ == "__main__":
    sys.exit(main(SWEEP, doc=__doc__))
