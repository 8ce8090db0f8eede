"""Table 2 of the ANet-c6 paper (000/001): AlexNet, ANet-c6 and VGG on three datasets.

Each table row is one (model, dataset) trial. The paper's setup, as trial config keys:
batch 64, 90/5/5 splits of all images, inputs 227 px (AlexNet, ANet-c6) and 224 px
(VGG-Net = VGG-16), up to 200 epochs, "check and adjust" every 200 steps and "early
break" (see ``trainables.rules``).

The paper names no optimizer or learning rate. We use Adam at 1e-4 as the base lr that
check-and-adjust scales: of the settings we tried it is the one under which all three
networks, none of which has batch-norm, train from scratch on all three datasets
(``--optimizers``/``--lrs`` sweep others).

Early-break expectations are not given either. Training: mini-batch accuracy > 0.98
(at most one of 64 wrong) for five consecutive mini-batches. Validation, per dataset: just
under the lowest validation accuracy the paper reports for that dataset (MNIST 0.982,
CIFAR 0.646, karyotype 0.879), because the paper says every run broke early, which a
higher expectation would not allow for its weakest model.
"""

from __future__ import annotations

from search_spaces import read_published

MODELS = ("alexnet", "anet_c6", "vgg16")
OPTIMIZERS = ("adam", "sgd")
LRS = (1e-4,)
LR_RANGE = (1e-5, 1e-2)
PUBLISHED_CSV = "anet_c6_table2.csv"
SPLITS_CSV = "anet_c6_table1_splits.csv"
# Our dataset -> the paper's column. The karyotype set is private; the G-band chromosome
# set (24 classes, the same staining) stands in for it.
DATASETS = {"mnist": "mnist", "cifar10": "cifar10", "chromosome_gband": "karyotype"}
PAPER_MODEL = {"alexnet": "alexnet", "anet_c6": "anet_c6", "vgg16": "vgg"}
PAPER_INPUT = {"alexnet": 227, "anet_c6": 227, "vgg16": 224}
EARLY_BREAK_VAL = {"mnist": 0.98, "cifar10": 0.64, "chromosome_gband": 0.87}
RECIPE = {
    "batch_size": 64,
    "train_rule": "check_and_adjust",
    "check_every": 200,
    "early_break": True,
    "early_break_train_acc": 0.98,
    "early_break_batches": 5,
    "pretrained": False,
}


def rows(image_sizes: dict[str, int], check_every: int) -> dict[str, dict]:
    """{label: config keys} for every (model, dataset) cell of Table 2."""
    return {
        f"{m} on {d}": {
            "model": m,
            "dataset": d,
            "optimizer": OPTIMIZERS[0],
            "lr": LRS[0],
            "image_size": image_sizes[m],
            "early_break_val_acc": EARLY_BREAK_VAL[d],
            **RECIPE,
            "check_every": check_every,
        }
        for d in DATASETS
        for m in MODELS
    }


def published() -> dict[tuple[str, str], dict[str, float]]:
    """(our model, our dataset) -> published train/val/test accuracy (fractions)."""
    ours_model = {v: k for k, v in PAPER_MODEL.items()}
    ours_data = {v: k for k, v in DATASETS.items()}
    return {
        (ours_model[r["model"]], ours_data[r["dataset"]]): {
            k: float(r[k]) for k in ("train_acc", "val_acc", "test_acc")
        }
        for r in read_published(PUBLISHED_CSV)
    }
