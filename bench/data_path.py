"""Data path throughput: is the loader ever what a CPU trial waits for?

The engine keeps a split as one uint8 ``N x C x H x W`` tensor (zero-copy from the
arrays Ray shares), gathers a batch with ``x[perm[i:i + bs]]`` and converts it with
``trainables.engine.make_preprocess`` (float, normalise, grey -> RGB, resize, layout).
Three sides are measured on the same CIFAR-10 images (a stratified subset of the real
training split, decoded once by ``load_splits``), interleaved round by round (loader,
ImageFolder with 0 and 2 workers, model with 1 and 2 threads) so that drift in this
machine's speed hits all of them alike; each number is a median over the rounds:

  loader      images/s of producing training batches exactly as ``Run.train_epoch``
              does (permutation, gather, the engine's own preprocess with a ResNet-18
              32 px trial's settings: 3 channels, 32 px, contiguous layout), no model.
              One torch thread, as a ``cpus_per_trial=1`` trial runs. (The decoded CIFAR
              arrays are HWC in memory, as ``np.stack`` keeps the PNG decoder's layout,
              so each contiguous-format batch includes a layout copy: about half the
              loader's time here.)
  imagefolder the same images written once as PNG files (re-encoded losslessly from the
              decoded arrays, so the same pixels) in an ImageFolder tree, read by
              torchvision ImageFolder + PIL + ToTensor + Normalize (same mean/std) and a
              DataLoader(batch_size, shuffle=True) with 0 and with 2 workers (persistent,
              so worker start-up is not timed); the faster is the reference.
  model       ResNet-18 (``trainables.models.build_model``, 32 px, 10 classes) training
              steps (forward, backward, SGD step) on ready batches, with 1 and 2 torch
              threads; the faster is what the model consumes at most on this machine.

Targets (issue 6): loader >= 10 x model and loader >= 5 x imagefolder. Each ratio gets a
row in ``results/benchmarks/data_path_vs_imagefolder.parquet`` and
``.../data_path_vs_model.parquet``; the last line printed is loader/model.

    flock /tmp/cnnsweep-bench.lock .venv/bin/python bench/data_path.py   # ~2 min, 2 cores
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bench.common import median_time, record  # noqa: E402
from trainables.data import load_splits, resolve_data_root  # noqa: E402
from trainables.engine import as_tensors, make_preprocess  # noqa: E402
from trainables.models import build_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--data-root",
        help="folder holding cifar10/MANIFEST.json (default $CNNSWEEP_DATA_ROOT, else "
        "../shared/data beside the repository)",
    )
    p.add_argument("--images", type=int, default=10000, help="train images (default 10000)")
    p.add_argument("--batch-size", type=int, default=32, help="default 32")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5, >= 3)")
    p.add_argument(
        "--loader-epochs",
        type=int,
        default=5,
        help="epochs of the fast loader per round, so one timing lasts > 0.1 s (default 5)",
    )
    p.add_argument(
        "--model-steps", type=int, default=10, help="ResNet-18 steps per round (default 10)"
    )
    p.add_argument(
        "--workers", default="0,2", help="DataLoader num_workers to measure (default 0,2)"
    )
    p.add_argument("--threads", default="1,2", help="model torch threads (default 1,2)")
    p.add_argument("--no-record", action="store_true", help="print only (debug runs)")
    args = p.parse_args(argv)
    if args.rounds < 3 and not args.no_record:
        p.error("--rounds: allowed >= 3 for a recorded run (medians of at least 3)")
    return args


def fast_epoch(x: torch.Tensor, y: torch.Tensor, prep, bs: int, gen: torch.Generator) -> int:
    """One pass as ``Run.train_epoch`` feeds the model (including its skip of a 1-sample
    last batch); returns the number of images produced."""
    perm = torch.randperm(len(y), generator=gen)
    seen = 0
    for i in range(0, len(y), bs):
        idx = perm[i : i + bs]
        if len(idx) < 2:
            continue
        _xb, yb = prep(x[idx]), y[idx]  # the batch the model would get
        seen += len(yb)
    return seen


def write_image_folder(images, labels, root: Path) -> Path:
    """``root/<label>/<index>.png`` for every image: the layout ImageFolder reads."""
    from PIL import Image

    for i, (img, lab) in enumerate(zip(images, labels, strict=True)):
        folder = root / f"{int(lab):02d}"  # two digits: ImageFolder sorts names as strings
        folder.mkdir(parents=True, exist_ok=True)
        arr = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
        Image.fromarray(arr).save(folder / f"{i:06d}.png")
    return root


def image_folder_loader(root: Path, mean, std, bs: int, workers: int):
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])
    ds = datasets.ImageFolder(str(root), transform=tf)
    return torch.utils.data.DataLoader(
        ds, batch_size=bs, shuffle=True, num_workers=workers, persistent_workers=workers > 0
    )


def loader_epoch(loader) -> int:
    seen = 0
    for _xb, yb in loader:
        seen += len(yb)
    return seen


def model_side(threads: int, batches: list[tuple[torch.Tensor, torch.Tensor]]):
    """A ResNet-18 32 px training step function on ready batches, with ``threads``."""
    torch.manual_seed(0)
    model = build_model("resnet18", num_classes=10, in_channels=3, image_size=32, pretrained=False)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def steps(n: int) -> int:
        torch.set_num_threads(threads)
        seen = 0
        for k in range(n):
            xb, yb = batches[k % len(batches)]
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += len(yb)
        return seen

    return steps


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    root = resolve_data_root(args.data_root) or (REPO.parent / "shared" / "data").resolve()
    workers = [int(w) for w in args.workers.split(",")]
    threads = [int(t) for t in args.threads.split(",")]
    bs = args.batch_size

    data = load_splits("cifar10", root=root, train_limit=args.images)
    x, y = as_tensors(data.train, CPU)
    n = len(y)
    # The settings of a ResNet-18 32 px trial (cifar_cnns budgets, TrialConfig defaults).
    prep = make_preprocess(
        data.mean, data.std, image_size=32, in_channels=3, channels_last=False, device=CPU
    )
    gen = torch.Generator().manual_seed(0)
    torch.set_num_threads(1)
    batches = [(prep(x[i : i + bs]), y[i : i + bs]) for i in range(0, 10 * bs, bs)]

    tmp = tempfile.TemporaryDirectory(prefix="cnnsweep-imagefolder-")
    folder = write_image_folder(data.train.images, data.train.labels, Path(tmp.name))
    loaders = {w: image_folder_loader(folder, data.mean, data.std, bs, w) for w in workers}
    models = {t: model_side(t, batches) for t in threads}
    print(f"{n} CIFAR-10 images at 32 px from {root}; batch {bs}; {args.rounds} rounds")

    def fast() -> int:
        torch.set_num_threads(1)
        return sum(fast_epoch(x, y, prep, bs, gen) for _ in range(args.loader_epochs))

    # Warm-up (untimed): first epochs start the persistent workers and fill caches.
    fast()
    for w in workers:
        loader_epoch(loaders[w])
    for t in threads:
        models[t](2)

    rates: dict[str, list[float]] = {"loader": []}
    rates |= {f"imagefolder_w{w}": [] for w in workers}
    rates |= {f"model_t{t}": [] for t in threads}
    n_fast = args.loader_epochs * fast_epoch(x, y, prep, bs, gen)
    n_ref = loader_epoch(loaders[workers[0]])
    for r in range(args.rounds):
        # median_time with one repeat is one timing; the median is over the rounds, so
        # the sides stay interleaved.
        rates["loader"].append(n_fast / median_time(fast, repeats=1, warmup=0))
        for w in workers:
            sec = median_time(lambda ld=loaders[w]: loader_epoch(ld), repeats=1, warmup=0)
            rates[f"imagefolder_w{w}"].append(n_ref / sec)
        for t in threads:
            sec = median_time(lambda m=models[t]: m(args.model_steps), repeats=1, warmup=0)
            rates[f"model_t{t}"].append(args.model_steps * bs / sec)
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in rates.items()))
    loaders.clear()  # stops the persistent workers
    tmp.cleanup()

    med = {k: statistics.median(v) for k, v in rates.items()}
    loader = med["loader"]
    ref_key = max((k for k in med if k.startswith("imagefolder")), key=med.get)
    model_key = max((k for k in med if k.startswith("model")), key=med.get)
    print("medians, images/s: " + ", ".join(f"{k} {v:,.0f}" for k, v in med.items()))
    print(f"reference = {ref_key}, model consumption = {model_key}")
    row = {
        "dataset": "cifar10",
        "data_root": str(root),
        "images": n,
        "image_size": 32,
        "batch_size": bs,
        "rounds": args.rounds,
        **{f"{k}_images_per_s": v for k, v in med.items()},
        "rounds_images_per_s": json.dumps({k: [round(s, 1) for s in v] for k, v in rates.items()}),
        "reference": ref_key,
        "model_reference": model_key,
    }
    vs_ref, vs_model = loader / med[ref_key], loader / med[model_key]
    if args.no_record:
        print(f"loader_over_imagefolder = {vs_ref:.3f} (target >= 5)")
        print(f"loader_over_model = {vs_model:.3f} (target >= 10)")
        return
    row |= {"loader_over_imagefolder": vs_ref, "loader_over_model": vs_model}
    row_ref = {k: v for k, v in row.items() if k != "loader_over_imagefolder"}
    record("data_path_vs_imagefolder", row_ref, "loader_over_imagefolder", vs_ref, ">= 5")
    row_model = {k: v for k, v in row.items() if k != "loader_over_model"}
    record("data_path_vs_model", row_model, "loader_over_model", vs_model, ">= 10")


if __name__ == "__main__":
    main()
