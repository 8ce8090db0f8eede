"""Tables I-III and the MNIST figure of the Keras CNN report (002), as table rows.

Each row is one trial: (dataset, network variant, optimizer, lr, augmentation) plus the
report's training recipe: batch 64; SGD lr 0.01 momentum 0.9 for the from-scratch CNNs;
Adam or SGD (momentum 0.9, our assumption) at lr 1e-4 for transfer learning from
ImageNet weights; early stopping on validation loss with patience 20 (simple CNN,
transfer) or 50 (VGG blocks); 20 % of train held out for validation. One row the report
describes but does not tabulate is added: VGG blocks + dropout with the flip + rotation
augmentation it found harmful ("a decrease of 5.2 %").
"""

from __future__ import annotations

from search_spaces import read_published

PUBLISHED_CSV = "keras_cnn_tables.csv"
OPTIMIZERS = ("sgd", "adam")
LRS = (0.01, 1e-4)  # the report's two: from scratch, transfer (each row has its own)
LR_RANGE = (1e-5, 1e-1)
SCRATCH = {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9}
TRANSFER = {"lr": 1e-4, "momentum": 0.9, "pretrained": True, "early_stop_patience": 20}

# label -> (table, dataset, model, config keys, published lookup key)
# published key: (dataset, network, optimizer, dropout, batch_norm, transfer, augmented)
ROWS: dict[str, tuple] = {}


def _row(table, label, dataset, model, keys, pub):
    ROWS[label] = (table, dataset, model, keys, pub)


_row("mnist", "MNIST: Simple CNN", "mnist", "simple_cnn",
     {**SCRATCH, "early_stop_patience": 20, "in_channels": 1},
     ("mnist", "simple_cnn", "sgd", "no", "no", "no", "no"))  # fmt: skip
for aug in ("no", "yes"):
    suffix = " + augmentation" if aug == "yes" else ""
    table = "table3" if aug == "yes" else None
    augment = {"augment": "flip_shift" if aug == "yes" else "none"}
    if aug == "no":
        _row("table1", "Simple CNN", "cifar10", "simple_cnn",
             {**SCRATCH, "early_stop_patience": 20},
             ("cifar10", "simple_cnn", "sgd", "no", "no", "no", "no"))  # fmt: skip
        _row("table1", "Simple CNN + Dropout", "cifar10", "simple_cnn_dropout",
             {**SCRATCH, "early_stop_patience": 20},
             ("cifar10", "simple_cnn", "sgd", "yes", "no", "no", "no"))  # fmt: skip
    _row(table or "table1", f"VGG blocks + Dropout{suffix}", "cifar10", "vgg_blocks",
         {**SCRATCH, "early_stop_patience": 50, **augment},
         ("cifar10", "vgg_blocks", "sgd", "yes", "no", "no", aug))  # fmt: skip
    _row(table or "table1", f"VGG blocks + Dropout + Batch norm{suffix}", "cifar10",
         "vgg_blocks_bn", {**SCRATCH, "early_stop_patience": 50, **augment},
         ("cifar10", "vgg_blocks", "sgd", "yes", "yes", "no", aug))  # fmt: skip
    _row(table or "table2", f"Resnet50 + SGD{suffix}", "cifar10", "resnet50_transfer",
         {**TRANSFER, "optimizer": "sgd", **augment},
         ("cifar10", "resnet50", "sgd", "no", "no", "imagenet", aug))  # fmt: skip
    _row(table or "table2", f"Resnet50 + Adam{suffix}", "cifar10", "resnet50_transfer",
         {**TRANSFER, "optimizer": "adam", **augment},
         ("cifar10", "resnet50", "adam", "no", "no", "imagenet", aug))  # fmt: skip
    if aug == "yes":
        _row("table3", "Resnet50 + Adam + Batch norm + augmentation", "cifar10",
             "resnet50_transfer_bn", {**TRANSFER, "optimizer": "adam", **augment},
             ("cifar10", "resnet50", "adam", "no", "yes", "imagenet", "yes"))  # fmt: skip
        _row("table3", "VGG19 + Adam + augmentation", "cifar10", "vgg19_transfer",
             {**TRANSFER, "optimizer": "adam", **augment},
             ("cifar10", "vgg19", "adam", "no", "no", "imagenet", "yes"))  # fmt: skip
    _row(table or "table2", f"VGG19 + Adam + Batch norm{suffix}", "cifar10",
         "vgg19_transfer_bn", {**TRANSFER, "optimizer": "adam", **augment},
         ("cifar10", "vgg19", "adam", "no", "yes", "imagenet", aug))  # fmt: skip
_row("table3", "VGG blocks + Dropout + flip/rotate augmentation", "cifar10", "vgg_blocks",
     {**SCRATCH, "early_stop_patience": 50, "augment": "flip_rotate"}, None)  # fmt: skip

MODELS = tuple(dict.fromkeys(r[2] for r in ROWS.values()))
NOT_TABULATED = {
    "VGG blocks + Dropout + flip/rotate augmentation": "paper: 5.2 % below the same "
    "network without augmentation (81.89 %), not tabulated",
}


def published() -> dict[tuple, float]:
    """(dataset, network, optimizer, dropout, batch_norm, transfer, augmented) -> %."""
    keys = ("dataset", "network", "optimizer", "dropout", "batch_norm", "transfer", "augmented")
    return {
        tuple(r[k] for k in keys): float(r["test_accuracy_pct"])
        for r in read_published(PUBLISHED_CSV)
    }


def published_for(label: str) -> float | None:
    key = ROWS[label][4]
    return None if key is None else published()[key]
