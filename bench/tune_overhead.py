"""Training throughput of a trial under Ray Tune vs the same engine run bare (issue 6, target 1).

What: ResNet-18 at 32 px on a few thousand real MNIST images, 1 thread, batch 32, a few
epochs, driven two ways with the same config and data:

- ``bare``: :class:`trainables.engine.Run` in a fresh Python process (spawned, no Ray in
  it), one ``train_epoch`` per epoch, the test evaluation on the last epoch and the
  per-epoch checkpoint save the trainable does (its time is reported on its own, so the
  wall without it is visible too). A fresh process, not this one, because a trial always
  starts in a fresh worker: both sides then pay the same cold start (library init,
  oneDNN kernel creation in epoch 1), and what differs is Ray alone;
- ``tune``: the real trainable (:func:`trainables.trainable.train_trial`) under a real
  ``Tuner``: one trial with 1 CPU, a checkpoint every epoch, ``num_to_keep=1``, storage in
  a temporary folder, as ``sweeps/tuner.py`` builds it.

Why: a sweep is only as fast as its trials; Ray must not cost training throughput (thread
settings in workers, CPU affinity, the controller's own CPU use). The sides alternate
(bare, tune, tune, bare, bare, tune, ...) because this machine drifts; the ratio compares
medians of the engine's own per-epoch ``images_per_s`` (the training loop only). Epoch wall time
(training + validation + checkpoint + report) and the fixed per-trial cost (worker start,
data transfer, model build) are printed too, so the overhead outside the loop is visible.
The trial also records what its process sees (``OMP_NUM_THREADS``, torch intra-/inter-op
threads, CPU affinity) before and after the trainable runs.

Run it under the shared lock (other benchmarks use the same cores):

    flock /tmp/cnnsweep-bench.lock .venv/bin/python bench/tune_overhead.py

The last line printed is ``tune_over_bare_images_per_s = <ratio> (target >= 0.98)``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

from bench.common import record  # noqa: E402
from trainables.data import DataSplits, load_splits, resolve_data_root  # noqa: E402
from trainables.trainable import train_trial  # noqa: E402

NAME = "tune_overhead"
TARGET = ">= 0.98"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="resnet18", help="registered model (default resnet18)")
    p.add_argument("--dataset", default="mnist", help="mnist or cifar10 (default mnist)")
    p.add_argument("--data-root", help="dataset folder (default $CNNSWEEP_DATA_ROOT)")
    p.add_argument("--train-limit", type=int, default=2000, help="train images (default 2000)")
    p.add_argument("--val-limit", type=int, default=500, help="val images (default 500)")
    p.add_argument("--test-limit", type=int, default=500, help="test images (default 500)")
    p.add_argument("--image-size", type=int, default=32, help="model input side (default 32)")
    p.add_argument("--batch-size", type=int, default=32, help="default 32")
    p.add_argument("--threads", type=int, default=1, help="torch threads = trial CPUs (1)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per run (default 3)")
    p.add_argument("--repeats", type=int, default=4, help="bare/tune pairs (default 4)")
    p.add_argument("--no-record", action="store_true", help="debug: do not append a row")
    return p


def trial_config(args: argparse.Namespace) -> dict:
    """The trial config both sides run (the keys a CPU sweep's base config has)."""
    return {
        "model": args.model,
        "optimizer": "sgd",
        "lr": 0.01,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "image_size": args.image_size,
        "seed": 0,
        "num_threads": args.threads,
        "channels_last": False,
        "dataset": args.dataset,
    }


def thread_state() -> dict:
    """What this process's torch and OpenMP see: the knobs Ray may set in a worker."""
    import torch

    return {
        "pid": os.getpid(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "MKL_NUM_THREADS": os.environ.get("MKL_NUM_THREADS"),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "affinity": sorted(os.sched_getaffinity(0)),
    }


def bare_side(config: dict, data: dict[str, DataSplits]) -> tuple[list[dict], dict]:
    """The trainable's loop without Ray: per epoch, train + validate (+ test on the last),
    then the same checkpoint save into a temporary folder. Also returns the process's
    thread settings."""
    from trainables.engine import save_checkpoint
    from trainables.trainable import make_run, test_metrics

    t0 = time.perf_counter()
    run = make_run(config, data, None)  # inside epoch 1's wall, as in the trial
    rows = []
    while run.epoch < run.cfg.epochs:
        m = run.train_epoch()
        if run.epoch == run.cfg.epochs:
            m.update(test_metrics(run))
        t_ckpt = time.perf_counter()
        with tempfile.TemporaryDirectory() as folder:
            save_checkpoint(run, folder)
        t1 = time.perf_counter()
        rows.append(
            {
                "epoch": m["epoch"],
                "images_per_s": m["images_per_s"],
                "wall_s": t1 - t0,
                "checkpoint_s": t1 - t_ckpt,
            }
        )
        t0 = t1
    return rows, thread_state()


def bare_in_fresh_process(config: dict, data: dict[str, DataSplits]) -> tuple[list[dict], dict]:
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(bare_side, config, data).result()


def probed_trial(config: dict, data, cells=None, probe_dir: str = "") -> None:
    """The real trainable, with the worker's thread settings written down before and after
    (the engine sets the intra-op threads when it builds the Run). ``train_trial`` is a
    module global, so the worker imports it by reference as it does in a sweep."""
    before = thread_state()
    train_trial(config, data, cells)
    state = {"before": before, "after": thread_state()}
    Path(probe_dir, f"probe_{os.getpid()}.json").write_text(json.dumps(state))


def tune_side(
    config: dict, data: dict[str, DataSplits], threads: int, gpus: float = 0
) -> tuple[list[dict], dict]:
    """One trial of the real trainable under a Tuner built as the sweeps build it (``gpus``:
    its GPU request; bench/gpu_check.py runs this side on a GPU)."""
    from ray import tune

    with tempfile.TemporaryDirectory() as storage, tempfile.TemporaryDirectory() as probe:
        trainable = tune.with_resources(
            tune.with_parameters(probed_trial, data=data, cells=None, probe_dir=probe),
            {"cpu": threads, "gpu": gpus},
        )
        tuner = tune.Tuner(
            trainable,
            param_space=config,
            tune_config=tune.TuneConfig(metric="val_acc", mode="max", num_samples=1),
            run_config=tune.RunConfig(
                name="tune_overhead",
                storage_path=storage,
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                verbose=0,
            ),
        )
        t0 = time.perf_counter()
        results = tuner.fit()
        fit_s = time.perf_counter() - t0
        res = results[0]
        if res.error:
            raise RuntimeError(f"the trial errored: {res.error}")
        df = res.metrics_dataframe
        probes = [json.loads(p.read_text()) for p in Path(probe).glob("probe_*.json")]
    rows = [
        {"epoch": int(r.epoch), "images_per_s": r.images_per_s, "wall_s": r.time_this_iter_s}
        for r in df.itertuples()
    ]
    extra = {
        "fit_s": fit_s,
        "outside_epochs_s": fit_s - sum(r["wall_s"] for r in rows),
        "probe": probes[0] if probes else {},
    }
    return rows, extra


def med(rows: list[dict], key: str, first_epoch: int = 1, last_epoch: int = 10**9) -> float:
    vals = [r[key] for r in rows if first_epoch <= r["epoch"] <= last_epoch]
    return statistics.median(vals) if vals else float("nan")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import ray

    root = resolve_data_root(args.data_root)
    splits = load_splits(
        args.dataset,
        root=root,
        train_limit=args.train_limit,
        val_limit=args.val_limit,
        test_limit=args.test_limit,
        image_size=args.image_size,
    )
    data = {args.dataset: splits}  # a dict keyed by dataset, as the sweeps pass it
    config = trial_config(args)

    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
    )
    try:
        bare: list[dict] = []
        tuned: list[dict] = []
        extras = []
        for rep in range(args.repeats):
            # ABBA order (bare first in even pairs, tune first in odd ones): a slow drift
            # of this machine then biases neither side
            if rep % 2 == 0:
                b, bare_state = bare_in_fresh_process(config, data)
                t, extra = tune_side(config, data, args.threads)
            else:
                t, extra = tune_side(config, data, args.threads)
                b, bare_state = bare_in_fresh_process(config, data)
            bare += [{"rep": rep, **r} for r in b]
            tuned += [{"rep": rep, **r} for r in t]
            extras.append(extra)
            print(
                f"[rep {rep}] bare {med(b, 'images_per_s'):.1f} img/s, "
                f"tune {med(t, 'images_per_s'):.1f} img/s; tune fit {extra['fit_s']:.1f} s "
                f"({extra['outside_epochs_s']:.1f} s outside epochs)",
                flush=True,
            )
    finally:
        ray.shutdown()

    last = args.epochs
    mid = (2, last - 1) if last >= 3 else (1, last)  # no model build, no test evaluation
    summary = {
        side: {
            "images_per_s_all": med(rows, "images_per_s"),
            "images_per_s_from_epoch2": med(rows, "images_per_s", 2),
            "epoch_wall_s_mid": med(rows, "wall_s", *mid),
            "epoch1_wall_s": med(rows, "wall_s", 1, 1),
            "last_epoch_wall_s": med(rows, "wall_s", last, last),
        }
        for side, rows in (("bare", bare), ("tune", tuned))
    }
    ckpt_s = med(bare, "checkpoint_s")
    print(f"\nper epoch ({args.model}, {args.image_size} px, {args.threads} thread(s)):")
    print("rep side epoch images_per_s wall_s")
    for r in sorted(bare + [{**x, "side": "tune"} for x in tuned], key=lambda r: r["rep"]):
        print(
            f"{r['rep']:>3} {r.get('side', 'bare'):<4} {r['epoch']:>5} "
            f"{r['images_per_s']:>12.1f} {r['wall_s']:>6.2f}"
        )
    print("\nmedians            bare     tune   tune/bare")
    for key in summary["bare"]:
        bv, tv = summary["bare"][key], summary["tune"][key]
        print(f"{key:<25} {bv:8.2f} {tv:8.2f} {tv / bv:8.3f}")
    print(f"bare checkpoint save per epoch: {ckpt_s:.2f} s")
    print(
        f"tune per-trial cost outside epochs (median): "
        f"{statistics.median(e['outside_epochs_s'] for e in extras):.1f} s"
    )
    probe = extras[-1]["probe"]
    print(f"threads in the trial worker: {json.dumps(probe)}")
    print(f"threads in the bare process: {json.dumps(bare_state)}")

    ratio = summary["tune"]["images_per_s_all"] / summary["bare"]["images_per_s_all"]
    row = {
        "model": args.model,
        "dataset": args.dataset,
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "train_images": len(splits.train),
        "epochs": args.epochs,
        "repeats": args.repeats,
        **{f"{side}_{k}": v for side, s in summary.items() for k, v in s.items()},
        "bare_checkpoint_s": ckpt_s,
        "tune_fit_s_median": statistics.median(e["fit_s"] for e in extras),
        "tune_outside_epochs_s_median": statistics.median(e["outside_epochs_s"] for e in extras),
        "per_epoch": json.dumps({"bare": bare, "tune": tuned}),
        "trial_threads": json.dumps(probe),
        "bare_threads": json.dumps(bare_state),
    }
    name = "tune_over_bare_images_per_s"
    if args.no_record:
        print(f"{name} = {ratio:.3f} (target {TARGET})")
    else:
        record(NAME, row, name, ratio, TARGET)
    return 0


if __name__ == "__main__":
    sys.exit(main())
