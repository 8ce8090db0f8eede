"""What every benchmark shares: provenance, one Parquet row per run, the ratio line.

Each script in ``bench/`` measures both sides of a comparison in the same process (or
interleaved), because this machine's speed drifts by tens of percent between runs; the
ratio of two sides measured together is what is reported, never an absolute time
compared with one taken at another moment. The last line a script prints is its ratio;
the row it appends to ``results/benchmarks/<name>.parquet`` carries the raw numbers and
the provenance (command, hardware, date, git commit, versions).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sweeps.provenance import checkout_root, portable, provenance  # noqa: E402
from sweeps.results import write_parquet  # noqa: E402

OUT = Path(os.environ.get("CNNSWEEP_BENCH_DIR", REPO / "results" / "benchmarks"))


def median_time(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def record(name: str, row: dict, ratio_name: str, ratio: float, target: str) -> Path:
    """Append ``row`` (plus the ratio, target and provenance) to the benchmark's table
    and print the ratio as the last line."""
    data_root = row.get("data_root") or os.environ.get("CNNSWEEP_DATA_ROOT")
    roots = {"$CNNSWEEP_DATA_ROOT": data_root, ".": checkout_root()}
    prov = provenance(data_root=roots["$CNNSWEEP_DATA_ROOT"], benchmark=name)
    row = {k: portable(v, roots) if isinstance(v, str) else v for k, v in row.items()}
    flat = {
        "benchmark": name,
        "date_utc": prov["date_utc"],
        "git_commit": prov["git_commit"],
        "cpu": prov["hardware"]["cpu"],
        "cpu_count": prov["hardware"]["cpu_count"],
        "gpus": ",".join(prov["hardware"]["gpus"]) or "none",
        "torch": prov["versions"]["torch"],
        "ray": prov["versions"]["ray"],
        "command": prov["command"],
        **row,
        ratio_name: float(ratio),
        "target": target,
    }
    path = OUT / f"{name}.parquet"
    old = pd.read_parquet(path) if path.exists() else None
    df = pd.DataFrame([flat]) if old is None else pd.concat([old, pd.DataFrame([flat])])
    write_parquet(df.reset_index(drop=True), path, prov)
    print(json.dumps({k: v for k, v in flat.items() if k != "command"}, default=str))
    print(f"{ratio_name} = {ratio:.3f} (target {target})")
    return path


def train_and_test(
    dataset: str,
    config: dict,
    *,
    root: str,
    train_limit: int | None,
    val_limit: int,
    epochs: int,
    val_fraction: float = 0.1,
    split_fractions: tuple[float, float, float] | None = None,
) -> dict:
    """Train one trial config for ``epochs`` over a stratified ``train_limit``-image
    subset on one torch thread (as the sweep runs its trials), then test its
    best-validation weights on the **full** test split. Meant for a child process, so two
    options run side by side."""
    import torch

    from trainables.config import TrialConfig
    from trainables.data import load_splits
    from trainables.engine import Run

    torch.set_num_threads(1)
    data = load_splits(
        dataset,
        root=Path(root),
        image_size=config["image_size"],
        seed=config.get("seed", 0),
        train_limit=train_limit,
        val_limit=val_limit,
        val_fraction=val_fraction,
        split_fractions=split_fractions,
    )
    cfg = TrialConfig.from_dict(config | {"epochs": epochs, "num_threads": 1, "dataset": dataset})
    t0 = time.perf_counter()
    run = Run(cfg, data)
    for _ in range(epochs):
        run.train_epoch()
        if run.early_stopped:  # a sweep's stopping rule ends it here too (ANet-c6's break)
            break
    test = run.test_best()
    return {
        "train_images": len(data.train.labels),
        "epochs": epochs,
        "best_epoch": run.best_epoch,
        "test_images": len(data.test.labels),
        "test_acc": test.acc,
        "wall_s": time.perf_counter() - t0,
    }


def parser(doc: str, holds: str) -> argparse.ArgumentParser:
    """A benchmark's argument parser with its docstring as help and ``--data-root``."""
    p = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data-root", help=f"folder holding {holds} (default $CNNSWEEP_DATA_ROOT)")
    return p


def data_root(flag: str | None) -> str:
    """The data root: the flag, else $CNNSWEEP_DATA_ROOT, else ../shared/data."""
    from trainables.data import resolve_data_root

    return str(resolve_data_root(flag) or (REPO.parent / "shared" / "data").resolve())


def side_by_side(fn: Callable[..., dict], jobs: list[tuple]) -> list[dict]:
    """``fn(*job)`` for every job, two at a time in child processes (as a sweep runs two
    one-thread trials on 2 cores), results in the jobs' order."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(2) as pool:
        futures = [pool.submit(fn, *job) for job in jobs]
        return [f.result() for f in futures]


def option_columns(title: str, results: list[dict]) -> tuple[dict, dict]:
    """Print one line per option of :func:`train_and_test` results; return the row's
    per-option columns and {option: test accuracy}."""
    columns, acc = {}, {}
    for r in results:
        print(
            f"{title}{r['option']:>8}: {r['train_images']} train x {r['epochs']} epochs, "
            f"best epoch {r['best_epoch']}, test {100 * r['test_acc']:.2f} % on "
            f"{r['test_images']}, {r['wall_s']:.0f} s"
        )
        key = r["option"].replace(" ", "")
        columns |= {f"{key}_test_acc": r["test_acc"], f"{key}_wall_s": r["wall_s"]}
        acc[r["option"]] = r["test_acc"]
    return columns, acc
