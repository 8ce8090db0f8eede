"""Where one ``cpu``-budget trial's time goes: model compute vs data path vs overhead.

Builds the MNIST ``cpu`` budget's ResNet-18 trial (32 px, batch 32, one torch thread, a
stratified subset of the real training split) with the engine's own ``Run``, trains one
unprofiled warm-up epoch (one-off costs: oneDNN primitive creation, allocator growth),
then one epoch under ``torch.profiler`` (CPU activities). Each top-level operator is
charged with its whole time (children included) to one group:

  model      forward ops (conv, batch norm, ReLU, pooling, linear, residual add, loss),
             autograd backward, optimizer step and zero_grad
  data       permutation, gather (``x[idx]``), preprocess (float, normalise, grey -> RGB,
             interpolate, layout), augmentation
  bookkeep   accuracy and loss bookkeeping (argmax, compare, sum, ``.item()``),
             validation's confusion matrix
  other ops  any operator not named above (printed, so a new one is noticed)
  python     the rest of the wall time: the interpreter between operators, plus the
             profiler's own per-op cost (the unprofiled epoch's wall time is printed
             beside it so that cost can be judged)

The epoch includes validation (1,000 images, as the budget), as a trial's epoch does.
The last line is the fraction of the profiled epoch's wall time in model compute; a row
goes to ``results/benchmarks/profile_trial.parquet``.

    flock /tmp/cnnsweep-bench.lock .venv/bin/python bench/profile_trial.py   # ~1 min
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from bench.common import record  # noqa: E402
from trainables.config import TrialConfig  # noqa: E402
from trainables.data import load_splits, resolve_data_root  # noqa: E402
from trainables.engine import Run  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

# Top-level operator name -> group; first match wins (prefix match on the name).
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "model",
        (
            "aten::conv",
            "aten::_conv",
            "aten::batch_norm",
            "aten::relu",
            "aten::max_pool",
            "aten::adaptive_avg_pool",
            "aten::avg_pool",
            "aten::flatten",
            "aten::linear",
            "aten::add_",
            "aten::dropout",
            "aten::cat",
            "aten::cross_entropy_loss",
            "aten::ones_like",  # backward's seed gradient
            "autograd::",
            "Optimizer.",
            "aten::_foreach",
            "aten::zero_",
        ),
    ),
    (
        "data",
        (
            "aten::randperm",
            "aten::index",
            "aten::slice",
            "aten::to",
            "aten::_to_copy",
            "aten::copy_",
            "aten::div",
            "aten::sub",
            "aten::expand",
            "aten::upsample",
            "aten::contiguous",
            "aten::clone",
            "aten::grid_sample",
            "aten::affine_grid",
            "aten::where",
            "aten::flip",
            "aten::permute",
            "aten::rand",
            "aten::view",
            "aten::lift_fresh",
            "aten::alias",
        ),
    ),
    (
        "bookkeep",
        (
            "aten::argmax",
            "aten::eq",
            "aten::sum",
            "aten::item",
            "aten::_local_scalar_dense",
            "aten::bincount",
            "aten::mul",
            "aten::add",
            "aten::zeros",
            "aten::detach",
            "aten::empty",
            "aten::resolve_",  # .numpy() of the confusion matrix
        ),
    ),
)


def group_of(name: str) -> str:
    for group, prefixes in GROUPS:
        if name.startswith(prefixes):
            return group
    return "other ops"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--data-root",
        help="folder holding mnist/ (default $CNNSWEEP_DATA_ROOT, else ../shared/data)",
    )
    p.add_argument("--train-images", type=int, default=4000, help="default 4000 (cpu budget)")
    p.add_argument("--val-images", type=int, default=1000, help="default 1000 (cpu budget)")
    p.add_argument("--optimizer", default="adam", help="sgd or adam (default adam)")
    p.add_argument("--lr", type=float, default=0.001, help="default 0.001")
    p.add_argument("--model", default="resnet18", help="default resnet18")
    p.add_argument(
        "--fused-optimizer", action="store_true", help="the trial config's fused_optimizer"
    )
    p.add_argument("--top", type=int, default=25, help="operators to list (default 25)")
    p.add_argument("--label", default="", help="free text stored with the row (before/after)")
    p.add_argument("--no-record", action="store_true", help="print only (debug runs)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    data = load_splits(
        "mnist",
        root=resolve_data_root(args.data_root) or (REPO.parent / "shared" / "data").resolve(),
        image_size=32,
        seed=0,
        train_limit=args.train_images,
        val_limit=args.val_images,
        test_limit=2000,
    )
    cfg = TrialConfig.from_dict(
        {
            "model": args.model,
            "optimizer": args.optimizer,
            "lr": args.lr,
            "epochs": 2,
            "image_size": 32,
            "batch_size": 32,
            "num_threads": 1,
            "dataset": "mnist",
            "fused_optimizer": args.fused_optimizer,
        }
    )
    run = Run(cfg, data, torch.device("cpu"))
    t0 = time.perf_counter()
    run.train_epoch()
    plain_s = time.perf_counter() - t0

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        metrics = run.train_epoch()
        wall_s = time.perf_counter() - t0

    events = [e for e in prof.events() if e.cpu_parent is None and e.device_type.name == "CPU"]
    by_group: dict[str, float] = collections.defaultdict(float)
    by_op: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0])
    for e in events:
        s = e.cpu_time_total / 1e6
        by_group[group_of(e.name)] += s
        by_op[e.name][0] += s
        by_op[e.name][1] += 1
    by_group["python"] = max(0.0, wall_s - sum(by_group.values()))

    print(
        f"\n{args.model}, {args.optimizer}{' (fused)' if args.fused_optimizer else ''}, "
        "32 px, batch 32, 1 thread, "
        f"{len(data.train)} train + {len(data.val)} val images; "
        f"epoch wall {wall_s:.2f} s profiled, {plain_s:.2f} s unprofiled (warm-up epoch); "
        f"train {metrics['images_per_s']:.0f} images/s"
    )
    print(f"\ntop {args.top} top-level operators (time incl. children):")
    print(f"{'operator':58s} {'group':>9s} {'calls':>7s} {'s':>7s} {'%':>6s}")
    for name, (s, n) in sorted(by_op.items(), key=lambda kv: -kv[1][0])[: args.top]:
        print(f"{name[:58]:58s} {group_of(name):>9s} {n:7d} {s:7.3f} {100 * s / wall_s:6.1f}")
    print("\nself CPU time, top operators (profiler's own table):")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    print("groups:")
    for g in ("model", "data", "bookkeep", "other ops", "python"):
        print(f"  {g:10s} {by_group[g]:7.3f} s  {100 * by_group[g] / wall_s:5.1f} %")
    others = sorted(n for n in by_op if group_of(n) == "other ops")
    if others:
        print("  other ops:", ", ".join(others))

    frac = by_group["model"] / wall_s
    row = {
        "label": args.label,
        "model": args.model,
        "optimizer": args.optimizer,
        "fused_optimizer": args.fused_optimizer,
        "image_size": 32,
        "batch_size": 32,
        "num_threads": 1,
        "train_images": len(data.train),
        "val_images": len(data.val),
        "epoch_wall_s_profiled": wall_s,
        "epoch_wall_s_unprofiled": plain_s,
        **{f"{g.replace(' ', '_')}_s": by_group[g] for g in GROUPS_ORDER},
    }
    if args.no_record:
        print(f"model_compute_fraction = {frac:.3f}")
    else:
        record("profile_trial", row, "model_compute_fraction", frac, ">= 0.9")


GROUPS_ORDER = ("model", "data", "bookkeep", "other ops", "python")

if __name__ == "__main__":
    main()
