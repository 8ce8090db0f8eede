"""Table I of the deep-networks MNIST paper (003): model x optimizer x learning rate.

The paper trains VGG-16, GoogLeNet and ResNet-18 with SGD and Adam at lr 0.001 and 0.01
(10 epochs, batch 32, 224 px). The grid adds lr 0.1 to cover the service's 0.001-0.1
range; Optuna samples the same range log-uniformly.
"""

from __future__ import annotations

from search_spaces import read_published

MODELS = ("vgg16", "googlenet", "resnet18")
OPTIMIZERS = ("sgd", "adam")
LRS = (0.001, 0.01, 0.1)
LR_RANGE = (1e-3, 1e-1)
PUBLISHED_CSV = "deepnets_mnist_table1.csv"


def published() -> list[dict]:
    """The paper's 12 rows: model, optimizer ('' = the paper names none), lr, accuracy %."""
    return [
        {
            "model": r["model"],
            "optimizer": r["optimizer"] or None,
            "lr": float(r["lr"]),
            "published_test_acc_pct": float(r["test_accuracy_pct"]),
        }
        for r in read_published(PUBLISHED_CSV)
    ]
