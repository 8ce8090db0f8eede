"""Which MNIST ``cpu`` preset buys the most test accuracy per minute on 2 cores.

The ``cpu`` preset of ``sweeps/mnist_optimizers.py`` cannot give 54k images x 10 epochs at
224 px; it must choose how to spend about 60 core-minutes. This script trains one paper
cell (default ResNet-18, plain SGD, lr 0.001: the cell furthest from the paper in the
committed run) under each option, two options at a time on one torch thread each (as the
sweep runs its trials), and tests each on the **full** 10k test split:

  4k x 3     the old preset: 3 epochs over a stratified 4,000-image subset
  12k x 1    the same number of optimizer steps, each on a new image
  24k x 1    twice the steps, one pass
  54k x 1    one pass over the whole training split (54k after the 6k validation)

The row written to ``results/benchmarks/mnist_cpu_preset.parquet`` holds each option's
test accuracy, wall seconds and accuracy per minute; the last line is the accuracy of
``12k x 1`` minus that of ``4k x 3`` (same steps: what unique images buy).

    flock /tmp/cnnsweep-bench.lock .venv/bin/python bench/mnist_cpu_preset.py   # ~12 min
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402

# option name -> (train images, epochs)
OPTIONS = {"4k x 3": (4000, 3), "12k x 1": (12000, 1), "24k x 1": (24000, 1), "54k x 1": (None, 1)}


def one_option(name: str, model: str, optimizer: str, lr: float, seed: int, root: str) -> dict:
    """Train and test one option in this (child) process, on one thread."""
    train, epochs = OPTIONS[name]
    config = {"model": model, "optimizer": optimizer, "lr": lr, "image_size": 32, "seed": seed}
    out = common.train_and_test(
        "mnist", config, root=root, train_limit=train, val_limit=1000, epochs=epochs
    )
    return {"option": name} | out


def main(argv: list[str] | None = None) -> None:
    p = common.parser(__doc__, "mnist/")
    p.add_argument("--model", default="resnet18")
    p.add_argument("--optimizer", default="sgd")
    p.add_argument("--lr", type=float, default=0.001)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--options", default=",".join(OPTIONS), help="comma-separated subset")
    args = p.parse_args(argv)
    root = common.data_root(args.data_root)
    jobs = [
        (n, args.model, args.optimizer, args.lr, args.seed, root) for n in args.options.split(",")
    ]
    rows = common.side_by_side(one_option, jobs)
    row = {
        "model": args.model,
        "optimizer": args.optimizer,
        "lr": args.lr,
        "seed": args.seed,
        "data_root": root,
    }
    columns, acc = common.option_columns("", rows)
    row |= columns
    gain = 100 * (acc.get("12k x 1", float("nan")) - acc.get("4k x 3", float("nan")))
    common.record("mnist_cpu_preset", row, "unique_images_gain_pp", gain, "> 0 (same steps)")


if __name__ == "__main__":
    main()
