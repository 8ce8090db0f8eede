"""How the Keras report's (002) ``cpu`` preset should spend its images on 2 cores.

The ``cpu`` preset of ``sweeps/cifar_cnns.py`` trains the report's from-scratch CNNs for
a fixed number of image passes; it must choose between more epochs over fewer images and
fewer epochs over more. This script trains two of its rows (default: VGG blocks +
Dropout, the row furthest from the report, and Simple CNN + Dropout) under each option
with the same number of optimizer steps, two options at a time on one torch thread each
(as the sweep runs its trials), with the row's own recipe (batch 64, SGD lr 0.01 momentum
0.9, channels-last), 2,000 validation images, and tests the best-validation weights on
the **full** 10k CIFAR-10 test split:

  10k x 12   12 epochs over a stratified 10,000-image subset (the old preset's shape)
  20k x 6    the same steps over twice the images
  40k x 3    the same steps over all 40,000 training images (the report's split)

Each row of ``results/benchmarks/keras_cpu_preset.parquet`` holds one network's options
(test accuracy, best epoch, wall seconds); the last line is the accuracy of ``40k x 3``
minus that of ``10k x 12`` (same steps: what unique images buy).

    flock /tmp/cnnsweep-bench.lock .venv/bin/python bench/keras_cpu_preset.py   # ~12 min
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402
from search_spaces import keras_cnns as space  # noqa: E402

# option name -> (train images, epochs): 120,000 image passes each
OPTIONS = {"10k x 12": (10000, 12), "20k x 6": (20000, 6), "40k x 3": (40000, 3)}
ROWS = ("VGG blocks + Dropout", "Simple CNN + Dropout")


def one_option(label: str, name: str, root: str) -> dict:
    """Train and test one (row, option) in this (child) process, on one thread."""
    _, dataset, model, keys, _ = space.ROWS[label]
    train, epochs = OPTIONS[name]
    config = {"model": model, **keys, "batch_size": 64, "image_size": 32, "channels_last": True}
    config.pop("early_stop_patience", None)  # the patience is longer than any option here
    out = common.train_and_test(
        dataset, config, root=root, train_limit=train, val_limit=2000, epochs=epochs,
        val_fraction=0.2,
    )  # fmt: skip
    return {"row": label, "option": name} | out


def main(argv: list[str] | None = None) -> None:
    p = common.parser(__doc__, "cifar10/")
    p.add_argument("--rows", default=",".join(ROWS), help="comma-separated table rows")
    p.add_argument("--options", default=",".join(OPTIONS), help="comma-separated subset")
    args = p.parse_args(argv)
    root = common.data_root(args.data_root)
    # the slowest row first, so the two workers finish together
    jobs = [(r, o, root) for r in args.rows.split(",") for o in args.options.split(",")]
    results = common.side_by_side(one_option, jobs)
    for label in dict.fromkeys(r["row"] for r in results):
        columns, acc = common.option_columns(f"{label} ", [r for r in results if r["row"] == label])
        row = {"row": label, "data_root": root} | columns
        gain = 100 * (acc.get("40k x 3", float("nan")) - acc.get("10k x 12", float("nan")))
        common.record("keras_cpu_preset", row, "unique_images_gain_pp", gain, "> 0 (same steps)")


if __name__ == "__main__":
    main()
