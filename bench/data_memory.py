"""Data decoded once per node, not per trial: the memory of N concurrent trials vs one.

A sweep decodes its dataset once on the driver (``load_splits``) and hands it to every
trial with ``tune.with_parameters``, which ``ray.put``s it once; each trial gets the
numpy arrays back zero-copy from the node's shared object store (``/dev/shm``) and
``trainables.engine.as_tensors`` wraps them without copying. This script checks that
claim with memory numbers instead of taking it on trust.

It starts a private local Ray, decodes CIFAR-10 (all 60,000 images at 32 px by default:
45,000 train, 5,000 validation, 10,000 test) once, ``ray.put``s the ``DataSplits`` and
then runs 1, then N (2 and 4 by default) concurrent Ray actors standing in for trials.
Each actor, like ``Run``, builds the engine's train and validation tensors from the
shared arrays and the trial's preprocess, passes once over every batch (shuffled, batch
32, as in training, then validation in batches of 256), and holds the tensors while all
the others do the same; only then is every actor's memory read. Before its baseline each
actor rehearses the same pass over the first 4,096 images (zero-copy slices), so that
one-off costs (imports, deserialisation, kernels, the allocator's batch-sized free
lists) are not counted as data:

  rss       resident memory, which counts the object-store pages the actor has touched
            although they are shared by every process on the node;
  peak_rss  the process's high-water RSS (getrusage ru_maxrss);
  uss       unique set size: pages that only this process maps (psutil
            ``memory_full_info``), i.e. what the node would get back if the trial ended.
            Shared object-store pages are not in it;
  data_uss  uss after the full pass minus uss after the rehearsal (the baseline):
            the private memory that reading the whole dataset cost this trial. A
            copy of the data (decoding per trial, ``np.array(images)``, a float cache)
            shows up here as about the data's size; zero-copy sharing leaves a few MB,
            batch-sized buffers the allocator keeps (a constant, not proportional to the
            data).
  store     the bytes the object store holds for the dataset, once per node.

A control actor that deliberately copies its arrays (as per-trial decoding would) is
run too, to show the measurement does see a copy (its ratio is about 1). Reported: the
dataset size, data_uss per trial with 1 and N trials, the node total (sum of uss +
store) with N trials against N times the one-trial total (below 1 because the store is
counted once; the rest is each process's own torch/Ray footprint, ~0.45 GB, which no
data path removes), and, as the ratio (last line; target <= 0.1, a per-trial copy gives
about 1): the largest data_uss of any trial with N concurrent trials divided by the
bytes of data each trial reads (train + validation). The driver's own decoded copy
(freed once it is in the store) is not counted.

    flock /tmp/cnnsweep-bench.lock .venv/bin/python bench/data_memory.py   # ~2 min
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# Without this Ray binds to the machine's external address even when told 127.0.0.1.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import ray  # noqa: E402

from bench.common import record  # noqa: E402
from trainables.data import DataSplits, load_splits, resolve_data_root  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MB = 1e6
SPLITS = ("train", "val", "test")


@ray.remote(num_cpus=1)
class Trial:
    """Stands in for one trial: the engine's tensors over the shared arrays, held."""

    def __init__(self, image_size: int, batch_size: int, eval_batch_size: int) -> None:
        import torch

        import trainables.data  # noqa: F401 (unpickling DataSplits imports it)
        import trainables.engine  # noqa: F401 (imported before the baseline)

        torch.set_num_threads(1)  # a cpus_per_trial=1 trial
        self.image_size, self.bs, self.eval_bs = image_size, batch_size, eval_batch_size
        self.held = None

    def memory(self) -> dict:
        """This process's memory in bytes, and how much of it maps the object store."""
        import resource

        import psutil

        p = psutil.Process()
        full = p.memory_full_info()
        store_rss = sum(m.rss for m in p.memory_maps() if "plasma" in m.path)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        return {"rss": full.rss, "uss": full.uss, "peak_rss": peak, "store_rss": store_rss}

    def load(self, data: DataSplits, copy: bool, limit: int | None = None) -> dict:
        """Build the tensors as ``Run.__init__`` does and pass over every batch once, as
        one training epoch (shuffled, ``batch_size``) and its validation
        (``eval_batch_size``) read them; ``limit``: only the first images of each split
        (zero-copy slices), for the rehearsal."""
        import torch

        from trainables.data import ImageSet
        from trainables.engine import as_tensors, make_preprocess

        cpu = torch.device("cpu")
        self.held = None  # drop the rehearsal's data first
        train, val = data.train, data.val
        if limit:
            train, val = (ImageSet(s.images[:limit], s.labels[:limit]) for s in (train, val))
        if copy:  # the control: what decoding or copying per trial would cost
            train, val = (ImageSet(s.images.copy(), s.labels.copy()) for s in (train, val))
        prep = make_preprocess(
            data.mean,
            data.std,
            image_size=self.image_size,
            in_channels=3,
            channels_last=False,
            device=cpu,
        )
        (x, y), (vx, vy) = as_tensors(train, cpu), as_tensors(val, cpu)
        total = 0.0
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
        for i in range(0, len(y), self.bs):
            idx = perm[i : i + self.bs]
            total += float(prep(x[idx]).sum()) + int(y[idx].sum())
        for i in range(0, len(vy), self.eval_bs):
            sl = slice(i, i + self.eval_bs)
            total += float(prep(vx[sl]).sum()) + int(vy[sl].sum())
        self.held = None if limit else (x, y, vx, vy, data)  # the rehearsal holds nothing
        # zero-copy: the tensor views the array, and the array is the object store's
        # (read-only) buffer rather than a private copy
        shared = x.data_ptr() == train.images.ctypes.data and not train.images.flags.writeable
        return {"checksum": total, "images": len(y) + len(vy), "zero_copy": shared}


def run_phase(ref, n: int, args, copy: bool = False) -> list[dict]:
    """``n`` concurrent trials: baseline, load and pass, then everyone measured while all
    hold their data; the actors are killed afterwards."""
    actors = [
        Trial.remote(args.image_size, args.batch_size, args.eval_batch_size) for _ in range(n)
    ]
    # A dress rehearsal on the first images first, so the one-off costs of the first
    # call (deserialisation, kernels, the allocator's batch-sized free lists) fall before
    # the baseline.
    ray.get([a.load.remote(ref, copy, args.warm_images) for a in actors])
    before = ray.get([a.memory.remote() for a in actors])
    loads = ray.get([a.load.remote(ref, copy) for a in actors])
    after = ray.get([a.memory.remote() for a in actors])
    for a in actors:
        ray.kill(a)
    return [
        {**m, "uss_before": b["uss"], "data_uss": m["uss"] - b["uss"], **ld}
        for b, m, ld in zip(before, after, loads, strict=True)
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--data-root",
        help="folder holding <dataset>/MANIFEST.json (default $CNNSWEEP_DATA_ROOT, else "
        "../shared/data beside the repository)",
    )
    p.add_argument("--dataset", default="cifar10", help="cifar10 (default) or mnist")
    p.add_argument("--train-limit", type=int, default=None, help="default: the whole split")
    p.add_argument("--trials", default="2,4", help="concurrent trial counts after 1 (default 2,4)")
    p.add_argument("--image-size", type=int, default=32, help="model input side (default 32)")
    p.add_argument("--batch-size", type=int, default=32, help="training batch (default 32)")
    p.add_argument(
        "--eval-batch-size", type=int, default=256, help="validation batch (default 256)"
    )
    p.add_argument(
        "--warm-images",
        type=int,
        default=4096,
        help="train and val images of the rehearsal before the baseline (default 4096)",
    )
    p.add_argument("--no-record", action="store_true", help="print only (debug runs)")
    return p.parse_args(argv)


def mb(x: float) -> str:
    return f"{x / MB:,.1f} MB"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    root = resolve_data_root(args.data_root) or (REPO.parent / "shared" / "data").resolve()
    counts = [1, *(int(n) for n in args.trials.split(",") if int(n) > 1)]
    data = load_splits(args.dataset, root=root, train_limit=args.train_limit)
    nbytes = {k: s.images.nbytes + s.labels.nbytes for k, s in vars(data).items() if k in SPLITS}
    dataset_bytes, read_bytes = sum(nbytes.values()), nbytes["train"] + nbytes["val"]
    ray.init(
        address="local",
        num_cpus=max(counts),  # logical CPUs: N trials at once even on 2 cores
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
    )
    try:
        ref = ray.put(data)  # once per node, as tune.with_parameters does
        del data
        store = ray.experimental.get_object_locations([ref])[ref]["object_size"]
        print(
            f"{args.dataset}: dataset {mb(dataset_bytes)} (uint8), each trial reads "
            f"{mb(read_bytes)} (train + val); object store holds {mb(store)}"
        )
        phases = {n: run_phase(ref, n, args) for n in counts}
        control = run_phase(ref, 1, args, copy=True)[0]
    finally:
        ray.shutdown()

    def show(label: str, t: dict) -> None:
        print(
            f"  {label}: rss {mb(t['rss'])}, peak_rss {mb(t['peak_rss'])}, uss {mb(t['uss'])} "
            f"(before the data {mb(t['uss_before'])}), data_uss {mb(t['data_uss'])}, "
            f"object-store pages mapped {mb(t['store_rss'])}, zero_copy {t['zero_copy']}"
        )

    totals = {}
    for n, trials in phases.items():
        totals[n] = sum(t["uss"] for t in trials) + store
        print(f"{n} concurrent trial(s): node total (sum uss + store) {mb(totals[n])}")
        for i, t in enumerate(trials):
            show(f"trial {i}", t)
    print("control, 1 trial that copies its arrays (what per-trial decoding costs):")
    show("copy", control)

    n_max = max(counts)
    one = phases[1][0]
    worst = max(t["data_uss"] for t in phases[n_max])
    total_ratio = totals[n_max] / (n_max * totals[1])
    naive = sum(t["uss"] for t in phases[n_max]) + n_max * dataset_bytes
    print(
        f"with {n_max} trials the node holds {mb(totals[n_max])}; {n_max} x the one-trial "
        f"total is {mb(n_max * totals[1])} (ratio {total_ratio:.3f}); {n_max} trials each "
        f"decoding their own copy would hold {mb(naive)}"
    )
    print(
        f"private memory the data cost per trial: {mb(one['data_uss'])} with 1 trial, "
        f"at most {mb(worst)} with {n_max}; the copying control: {mb(control['data_uss'])}"
    )
    ratio = worst / read_bytes
    control_ratio = control["data_uss"] / read_bytes
    print(f"control_copy_over_data = {control_ratio:.3f} (a copy per trial: about 1)")
    if args.no_record:
        print(f"private_data_per_trial_over_data = {ratio:.3f} (target <= 0.1)")
        return
    row = {
        "dataset": args.dataset,
        "data_root": str(root),
        "dataset_mb": dataset_bytes / MB,
        "read_per_trial_mb": read_bytes / MB,
        "object_store_mb": store / MB,
        "trial_counts": ",".join(map(str, counts)),
        "total_mb_over_n_times_one": total_ratio,
        "control_copy_over_data": control_ratio,
        "control_data_uss_mb": control["data_uss"] / MB,
    }
    for n, trials in phases.items():
        row[f"node_total_mb_{n}"] = totals[n] / MB
        for key in ("rss", "peak_rss", "uss", "data_uss", "store_rss"):
            row[f"{key}_mb_{n}"] = max(t[key] for t in trials) / MB  # the largest trial
    record("data_memory", row, "private_data_per_trial_over_data", ratio, "<= 0.1")


if __name__ == "__main__":
    main()
