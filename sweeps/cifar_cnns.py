"""CNNs on CIFAR-10 (and MNIST) as in the Keras lab report (002): its Tables I-III.

    ray job submit --working-dir . -- python sweeps/cifar_cnns.py --budget cpu \\
        --data-root "$PWD/../shared/data" --results-dir "$PWD/results"

One trial per table row (``search_spaces/keras_cnns.py``): the simple CNN with and
without dropout, the VGG-block CNN with and without batch-norm, ResNet-50 and VGG-19
transfer learning with a new dense head, each with and without the flip + shift
augmentation (run on whole batches on the trial's device, ``trainables/augment.py``).
Validation is 20 % of train; the official test split is used once, on the weights with
the best validation accuracy. For the best row by validation the sweep writes its
confusion matrix and its 25 most confidently wrong test images.

Budgets:
  paper  the report's settings: 32 px (MNIST 28 px), up to 200 epochs with early
         stopping (patience 20 or 50), all 40,000 / 10,000 / 10,000 images.
  cpu    <= 40 min on 2 cores: the from-scratch rows, 6 epochs over all 40,000
         training images (bench/keras_cpu_preset.py: at equal steps more images beat
         more epochs), 2,000 val, the whole test set (patience cannot fire). Transfer
         rows run (1 epoch) only where their ImageNet file is here; without it they
         would train from scratch, so their table rows say ``no_weights`` instead.
  smoke  tests: the MNIST simple CNN and VGG blocks + BN (with augmentation), 1 epoch.
"""

from __future__ import annotations

import sys

import pandas as pd

from search_spaces import keras_cnns as space
from search_spaces import published_notes
from sweeps.compare import Comparison, Pair
from sweeps.runner import main
from sweeps.sweep import Budget, sweep_def

TRANSFER_EPOCHS = {"paper": 200, "cpu": 1, "smoke": 1}
SIZES = {"mnist": 28, "cifar10": 32}
BUDGETS = {
    "paper": Budget("paper", "the report's setup (GPU)", epochs=200, image_size=32, batch_size=64),
    "cpu": Budget(
        "cpu",
        "2 CPU cores, <= 40 min",
        epochs=6,  # of up to 200: each row's best epoch is still its last
        image_size=32,
        batch_size=64,
        train_limit=40000,  # all of train after the 20 % validation split
        val_limit=2000,
        asha=False,
        # from scratch, the transfer rows took half of the earlier preset's minutes and
        # compared with nothing (bench/keras_cpu_preset.py, README)
        weights_or_skip=True,
        expected_gap="6 of up to 200 epochs; transfer rows need ImageNet weights",
        channels_last=True,  # bench/cpu_packing.py: faster for the sweep as a whole
    ),
    "smoke": Budget(
        "smoke",
        "tests",
        epochs=1,
        image_size=32,
        batch_size=64,
        train_limit=256,
        val_limit=64,
        test_limit=64,
        models=("simple_cnn", "vgg_blocks_bn"),
        asha=False,
    ),
}


def cells(b: Budget) -> dict[str, dict]:
    out = {}
    for label, (_, dataset, model, keys, _) in space.ROWS.items():
        if b.name == "smoke" and keys.get("augment") != "flip_shift" and dataset != "mnist":
            continue  # smoke: the MNIST row and the augmented VGG-blocks row only
        cfg = {"model": model, "dataset": dataset, "image_size": SIZES[dataset], **keys}
        if keys.get("pretrained"):
            cfg["epochs"] = TRANSFER_EPOCHS[b.name]
        out[label] = cfg | {"report_worst": 25}

    # Longest trials first (transfer, then VGG blocks: ~4x a simple CNN's time), so two
    # trial slots finish together instead of one idling while the last long trial runs
    # (tables keep the report's row order).
    def cost(kv):
        return (not kv[1].get("pretrained", False), not kv[1]["model"].startswith("vgg"))

    return dict(sorted(out.items(), key=cost))


ACC = "test accuracy (%)"
TEST_ACC = Pair("published_test_acc_pct", "ours_test_acc_pct", ACC, delta="delta_pp")
NOTES = (
    *published_notes(space.PUBLISHED_CSV),
    "Percent; delta = ours - published in percentage points. Each row is one trial; "
    "test accuracy of the weights with the best validation accuracy.",
)
TABLE = Comparison(ids=("network",), pairs=(TEST_ACC,), notes=NOTES, headline=ACC)
WITHOUT_AUG = Pair(
    "published_without_aug_pct", "ours_without_aug_pct", "test accuracy without augmentation (%)"
)
TABLE3 = Comparison(ids=("network",), pairs=(WITHOUT_AUG, TEST_ACC), notes=NOTES, headline=ACC)
NAMES = {
    "table1": "table1_scratch",
    "table2": "table2_transfer",
    "table3": "table3_augmentation",
    "mnist": "mnist_simple_cnn",
}
COMPARISONS = {name: TABLE3 if name == "table3_augmentation" else TABLE for name in NAMES.values()}


def no_weights(r) -> str | None:
    """A transfer row whose model started from scratch is no transfer learning."""
    scratch = str(r["weights_source"] or "scratch").startswith("scratch")
    if "transfer" in str(r["model"]) and scratch:
        return (
            "no_weights: a transfer-learning row trained from scratch (no ImageNet weights "
            "were found here)"
        )
    return None


NOT_RUN_TRANSFER = (
    "no_weights: not run: without its ImageNet weights a transfer row would train from "
    "scratch, which is not the report's experiment (the cpu preset runs it only where the "
    "weights file is here; `cnnsweep weights fetch resnet50_transfer vgg19_transfer` supplies them)"
)


def not_run(label: str) -> dict:
    """A published row of a dataset this sweep ran, but not run itself: its number stays
    in the table with a verdict saying why ours is missing."""
    _, dataset, model, keys, _ = space.ROWS[label]
    return {
        "model": model,
        "dataset": dataset,
        "optimizer": keys["optimizer"],
        "lr": keys["lr"],
        "augment": keys.get("augment", "none"),
        "test_acc": None,
        "weights_source": None,
        "not_comparable": NOT_RUN_TRANSFER if keys.get("pretrained") else None,
    }


def tables(trials: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Tables I-III and the MNIST figure, each row ours beside the report's number; the
    rows of the datasets this sweep ran that it did not run stay, ours empty."""
    t = trials.set_index("label")
    ran = set(trials["dataset"])
    rows = {}
    for label, (table, dataset, *_rest) in space.ROWS.items():
        if label not in t.index and dataset not in ran:
            continue
        r = t.loc[label] if label in t.index else pd.Series(not_run(label))
        rows.setdefault(table, []).append(
            {
                "network": label,
                "dataset": r["dataset"],
                "optimizer": r["optimizer"],
                "lr": r["lr"],
                "augment": r["augment"],
                "published_test_acc_pct": space.published_for(label),
                "ours_test_acc_pct": None if pd.isna(r["test_acc"]) else 100 * r["test_acc"],
                "epochs_run": r.get("epochs_run"),
                "best_epoch": r.get("best_epoch"),
                "stopped_by": (r.get("stopped_by_rule") or "epochs") if label in t.index else None,
                "weights": r["weights_source"],
                "note": space.NOT_TABULATED.get(label, ""),
                "not_comparable": r.get("not_comparable") or no_weights(r),
            }
        )
    out = {NAMES[k]: pd.DataFrame(rows[k]) for k in NAMES if k in rows}
    if "table3_augmentation" in out:  # the report's "before -> after" columns
        ours_by_row = {r["network"]: r["ours_test_acc_pct"] for v in rows.values() for r in v}
        t3 = out["table3_augmentation"]
        base = t3["network"].str.replace(r" \+ (flip/rotate )?augmentation$", "", regex=True)
        t3.insert(5, "published_without_aug_pct", [
            space.published_for(n) if n in space.ROWS else None for n in base
        ])  # fmt: skip
        t3.insert(6, "ours_without_aug_pct", [ours_by_row.get(n) for n in base])
    return {name: COMPARISONS[name].apply(df) for name, df in out.items()}


SWEEP = sweep_def(
    space,
    name="cifar_cnns",
    dataset="cifar10",
    budgets=BUDGETS,
    make_tables=tables,
    cells=cells,
    val_fraction=0.2,
)

if __name__ == "__main__":
    sys.exit(main(SWEEP, doc=__doc__))
