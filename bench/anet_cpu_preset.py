"""How the ANet-c6 paper's (000/001) ``cpu`` preset should spend its images on 2 cores.

The ``cpu`` preset of ``sweeps/anet_generalization.py`` trains each (model, dataset) cell
for a fixed number of image passes. This script trains ANet-c6, the network furthest from
the paper in the committed run (MNIST 51 % vs 98.4 %), on MNIST and CIFAR-10 under each
option with the same number of optimizer steps, two at a time on one torch thread each
(as the sweep runs its trials), with the preset's own recipe (67 px, batch 64, Adam 1e-4
scaled by check-and-adjust every 25 steps, early break, the 90/5/5 pooled split, 1,000
validation images), and tests the selected candidate on the whole 5 % test split:

  6k x 3     3 epochs over a stratified 6,000-image subset (the old preset)
  18k x 1    the same steps, each on a new image

Each row of ``results/benchmarks/anet_cpu_preset.parquet`` holds one dataset's options;
the last line is the accuracy of ``18k x 1`` minus that of ``6k x 3``. ``--lr`` sets the
base lr (the paper names none; the preset's is Adam 1e-4).

    flock /tmp/cnnsweep-bench.lock .venv/bin/python bench/anet_cpu_preset.py   # ~7 min
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402
from search_spaces import anet_c6 as space  # noqa: E402
from sweeps.anet_generalization import CHECK_EVERY, SIZES, SWEEP  # noqa: E402

# option name -> (train images, epochs): 18,000 image passes each
OPTIONS = {"6k x 3": (6000, 3), "18k x 1": (18000, 1)}


def one_option(model: str, dataset: str, name: str, lr: float, root: str) -> dict:
    """Train and test one (cell, option) in this (child) process, on one thread."""
    config = space.rows(SIZES["cpu"], CHECK_EVERY["cpu"])[f"{model} on {dataset}"] | {"lr": lr}
    train, epochs = OPTIONS[name]
    out = common.train_and_test(
        dataset, config, root=root, train_limit=train, val_limit=1000, epochs=epochs,
        split_fractions=SWEEP.split_fractions,
    )  # fmt: skip
    return {"dataset": dataset, "option": name} | out


def main(argv: list[str] | None = None) -> None:
    p = common.parser(__doc__, "the datasets")
    p.add_argument("--model", default="anet_c6", choices=space.MODELS)
    p.add_argument("--datasets", default="mnist,cifar10", help="comma-separated")
    p.add_argument("--lr", type=float, default=space.LRS[0], help="the base lr (Adam)")
    args = p.parse_args(argv)
    root = common.data_root(args.data_root)
    jobs = [(args.model, d, o, args.lr, root) for d in args.datasets.split(",") for o in OPTIONS]
    results = common.side_by_side(one_option, jobs)
    for dataset in dict.fromkeys(r["dataset"] for r in results):
        row = {"model": args.model, "dataset": dataset, "lr": args.lr, "data_root": root}
        title = f"{args.model} on {dataset}, lr {args.lr:g}:"
        columns, acc = common.option_columns(title, [r for r in results if r["dataset"] == dataset])
        row |= columns
        gain = 100 * (acc["18k x 1"] - acc["6k x 3"])
        common.record("anet_cpu_preset", row, "unique_images_gain_pp", gain, "> 0 (same steps)")


if __name__ == "__main__":
    main()
