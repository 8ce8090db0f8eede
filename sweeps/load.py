"""The sweep's data, decoded once on the driver (uint8, shared with every trial of a node
through Ray's object store), and the ``[data]`` lines that say what was loaded."""

from __future__ import annotations

import time

from sweeps.plan import Plan
from trainables.config import ConfigError
from trainables.data import DataSplits, data_key, load_splits, resolve_data_root


def load_data(plan: Plan) -> dict[str, DataSplits]:
    """Every dataset the plan uses: {name: splits}, and {name-split: splits} for the
    other splits of leak-free twins (:func:`~trainables.data.data_key`)."""
    data = {name: load_one(plan, name) for name in plan.data.datasets}
    for name, split in plan.other_splits:
        data[data_key(name, split)] = load_one(plan, name, split)
    return data


def load_one(plan: Plan, name: str, split: str | None = None) -> DataSplits:
    t0 = time.perf_counter()
    b, src = plan.budget, plan.data
    print(f"[data] decoding {src.folder or name} once for all trials ...", flush=True)
    data = load_splits(
        name,
        root=src.folder or resolve_data_root(src.root_flag),
        image_size=b.image_size,
        split=split or src.split,
        download=src.download,
        val_fraction=plan.sweep.val_fraction,
        split_fractions=plan.sweep.split_fractions,
        seed=src.seed,
        train_limit=b.train_limit,
        val_limit=b.val_limit,
        test_limit=b.test_limit,
        groups=src.groups,
    )
    batch = max(c["batch_size"] for c in (plan.cells or {"": plan.base_config}).values())
    if batch > len(data.train):
        raise ConfigError(
            f"batch_size {batch} is larger than the {len(data.train)} training images of "
            f"{name}; allowed <= {len(data.train)}"
        )
    mb = sum(s.images.nbytes for s in (data.train, data.val, data.test)) / 2**20
    print(data_summary(data, mb, time.perf_counter() - t0), flush=True)
    return data


def data_sha256(data: dict[str, DataSplits]) -> str:
    """The sweep's data as one value: the MLflow tag and what --resume compares."""
    return ",".join(d.sha256 for d in data.values())


def data_summary(data: DataSplits, mib: float, seconds: float) -> str:
    """The ``[data]`` lines: sizes, how it was split, what needed tifffile, and a warning
    line of its own when images of one case may sit in train and test (the whole info,
    per-class counts included, goes to provenance)."""
    i = data.info
    groups = i.get("groups")
    split = i.get("split", "?") + (
        f" ({groups['train']}/{groups['val']}/{groups['test']} cases)" if groups else ""
    )
    extra = [f"grouped by {i['grouped_by']}"] if i.get("grouped_by") else []
    if i.get("read_with_tifffile"):
        extra.append(f"{i['read_with_tifffile']} TIFFs read with tifffile (Pillow refused them)")
    lines = [
        f"[data] {data.name}: {i['train']:,} train / {i['val']:,} val / {i['test']:,} test "
        f"images, {data.num_classes} classes, split: {split}"
        + "".join(f"; {e}" for e in extra)
        + f"; from {data.source} ({mib:.0f} MiB uint8, {seconds:.1f} s)"
    ]
    if i.get("split_warning"):
        lines.append(f"[data] warning: {i['split_warning']}")
    return "\n".join(lines)


def data_provenance(data: dict[str, DataSplits]) -> dict:
    """What provenance records of the data: source, sha256 and split info per dataset."""
    one = {n: {"source": d.source, "sha256": d.sha256, **d.info} for n, d in data.items()}
    if len(one) == 1:
        (name, d), *_ = one.items()
        return {"name": name, **d}
    return one
