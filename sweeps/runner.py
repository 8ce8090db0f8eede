"""Shared sweep machinery: flags, budgets, validation, Ray, the Tuner, results and MLflow.

A sweep script declares a :class:`SweepDef` (dataset, budgets, search space, how to
build its paper tables) and calls :func:`main`. Everything that can be wrong with the
input is checked before Ray starts a single trial: configs, data files, the results
folder, the tracking server, GPU requests.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from sweeps.tracking import TrackingError, check_tracking_server, resolve_tracking_uri
from trainables.config import ConfigError, TrialConfig
from trainables.datasets import (
    DATA_ROOT_ENV,
    DataError,
    DataSplits,
    FileGroups,
    list_datasets,
    load_splits,
    resolve_data_root,
)
from trainables.models import list_models

METRIC, MODE = "val_acc", "max"  # declared once: ASHA, Optuna and "best trial" all use it
RESULTS_ENV = "CNNSWEEP_RESULTS_DIR"
# Tune snapshots its state whenever a trial checkpoints with num_to_keep set; with
# epoch-long iterations that is cheap, so its "may become a bottleneck" warning is noise.
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
STORAGE_ENV = "CNNSWEEP_STORAGE_PATH"
STATE_FOLDER = ".cnnsweep"  # under the storage path: one folder per run


@dataclass(frozen=True)
class Budget:
    """A named preset: how much data, compute and resolution a sweep spends."""

    name: str
    description: str
    epochs: int
    image_size: int
    batch_size: int = 32
    train_limit: int | None = None  # stratified subsets; None = the whole split
    val_limit: int | None = None
    test_limit: int | None = None
    models: tuple[str, ...] | None = None  # None = the search space's own list
    optimizers: tuple[str, ...] | None = None
    lrs: tuple[float, ...] | None = None
    num_samples: int = 18  # Optuna trials
    grace_period: int = 1  # ASHA: epochs before the first stop decision
    reduction_factor: float = 3.0  # ASHA: keep the top 1/rf at each rung
    cpus_per_trial: int = 1
    # None: the engine decides (on for CUDA, off on CPU); CPU budgets set what
    # bench/cpu_packing.py measured fastest for their models
    channels_last: bool | None = None
    asha: bool = True  # False: every trial runs to the end (one trial per table row)
    expected_gap: str = ""


@dataclass(frozen=True)
class SweepDef:
    name: str  # MLflow experiment and results folder
    dataset: str
    budgets: dict[str, Budget]
    models: tuple[str, ...]
    optimizers: tuple[str, ...]
    lrs: tuple[float, ...]
    lr_range: tuple[float, float]
    # trials DataFrame -> {table name: DataFrame}; the first table is printed at the end
    make_tables: Callable[[pd.DataFrame], dict[str, pd.DataFrame]]
    fixed_config: dict = field(default_factory=dict)  # trial keys every trial gets
    val_fraction: float = 0.1
    # Sweeps that fill fixed table rows rather than a model x optimizer x lr product:
    # budget -> {row label: trial config keys (model, optimizer, lr, dataset, ...)}.
    cells: Callable[[Budget], dict[str, dict]] | None = None
    # (train, val, test) of one pool made of all the source's images (ANet-c6: 90/5/5);
    # None: the source's own test split, validation carved from train (val_fraction).
    split_fractions: tuple[float, float, float] | None = None


def sweep_def(space, **kw) -> SweepDef:
    """A SweepDef whose models, optimizers, lrs and lr range come from a search-space module."""
    return SweepDef(
        models=space.MODELS,
        optimizers=space.OPTIMIZERS,
        lrs=space.LRS,
        lr_range=space.LR_RANGE,
        **kw,
    )


# ------------------------------------------------------------------------------- flags


def _csv(kind: Callable):
    def parse(text: str):
        try:
            return tuple(kind(x) for x in text.split(",") if x.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a comma-separated list of {kind.__name__}"
            ) from None

    return parse


def build_parser(
    sweep: SweepDef, doc: str | None = None, prog: str | None = None
) -> argparse.ArgumentParser:
    """The flags every sweep shares (built in a function so all sweep scripts reuse it)."""
    p = argparse.ArgumentParser(
        prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--budget", default="cpu", help=f"preset: {', '.join(sweep.budgets)} (default cpu)"
    )
    p.add_argument(
        "--search",
        choices=("grid", "optuna"),
        default="grid",
        help="grid: every cell of the paper's table; optuna: TPE sampling",
    )
    p.add_argument("--num-samples", type=int, help="Optuna trials (default: the budget's)")
    p.add_argument("--models", type=_csv(str), help=f"subset of {','.join(sweep.models)}")
    p.add_argument("--optimizers", type=_csv(str), help=f"subset of {','.join(sweep.optimizers)}")
    p.add_argument("--lrs", type=_csv(float), help="grid learning rates, comma-separated")
    p.add_argument("--epochs", type=int, help="override the budget's epochs")
    p.add_argument("--momentum", type=float, help="SGD momentum (default 0, as the papers)")
    p.add_argument("--grace-period", type=int, help="ASHA grace period in epochs")
    p.add_argument("--reduction-factor", type=float, help="ASHA reduction factor")
    p.add_argument("--no-asha", action="store_true", help="run every trial to the end")
    p.add_argument("--seed", type=int, default=0, help="seed of splits, init and shuffling")
    p.add_argument(
        "--dataset",
        default=None,
        help=(
            "comma-separated subset of the datasets the table rows use (default: all)"
            if sweep.cells
            else f"registered dataset (default {sweep.dataset}): {', '.join(list_datasets())}"
        ),
    )
    p.add_argument(
        "--data",
        help="a folder of class folders (any image sizes) to use instead of a registered dataset",
    )
    p.add_argument(
        "--split",
        choices=("grouped", "random"),
        default="grouped",
        help="for pooled datasets: 80/10/10 grouped by case (default) or by image",
    )
    p.add_argument(
        "--group-pattern",
        metavar="REGEX",
        help="with --data: a regular expression whose named group (?P<group>...), searched "
        "in each file name, gives the image's case/cell, so the split is by case",
    )
    p.add_argument(
        "--groups-csv",
        metavar="FILE",
        help="with --data: a CSV with columns file (<class folder>/<name>, or the bare name) "
        "and group (the image's case/cell), so the split is by case",
    )
    p.add_argument(
        "--no-pretrained",
        action="store_true",
        help="train from scratch even where ImageNet weights can be had",
    )
    p.add_argument("--data-root", help=f"dataset folder (default ${DATA_ROOT_ENV})")
    p.add_argument(
        "--download",
        action="store_true",
        help="use torchvision's copy, downloading it if needed (needs a network)",
    )
    p.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default $MLFLOW_TRACKING_URI, else http://127.0.0.1:5000)",
    )
    p.add_argument(
        "--results-dir", help=f"where result tables go (default ${RESULTS_ENV}, else ./results)"
    )
    p.add_argument(
        "--storage-path",
        help=f"Tune storage for checkpoints (default ${STORAGE_ENV},"
        " else ~/ray_results); must be shared by all nodes of a cluster",
    )
    p.add_argument(
        "--ray-address",
        help="Ray cluster to join (default: $RAY_ADDRESS, a "
        "running local cluster, or a new local one)",
    )
    p.add_argument("--cpus-per-trial", type=int, help="CPUs (= torch threads) per trial")
    p.add_argument(
        "--gpus-per-trial",
        type=float,
        help="GPUs per trial (default: 1 when the cluster has GPUs, else 0)",
    )
    p.add_argument("--max-concurrent", type=int, help="limit on trials running at once")
    p.add_argument(
        "--max-failures",
        type=int,
        default=2,
        help="times a crashed trial is restarted from its checkpoint",
    )
    p.add_argument("--name", help="name of the sweep run (default <budget>-<time>)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue a sweep whose driver was killed: the run --name names, else this "
        "sweep's newest run under the storage path; same flags as the original command",
    )
    p.add_argument(
        "--mlflow-wait",
        type=float,
        default=120.0,
        help="at the end, seconds to wait for an unreachable MLflow server before "
        "writing the unlogged calls to a replay file (default 120)",
    )
    return p


# ---------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class Plan:
    """Everything resolved from flags and budget, validated, before Ray starts."""

    sweep: SweepDef
    budget: Budget
    search: str
    models: tuple[str, ...]
    optimizers: tuple[str, ...]
    lrs: tuple[float, ...]
    base_config: dict
    num_samples: int
    asha: bool
    grace_period: int
    reduction_factor: float
    results_dir: Path
    run_name: str
    datasets: tuple[str, ...] = ()
    cells: dict[str, dict] | None = None  # label -> full trial config (table-row sweeps)
    storage: Path = Path("~/ray_results").expanduser()  # Tune's experiments and checkpoints
    resume: dict | None = None  # the sidecar of the run --resume continues

    @property
    def experiment_dir(self) -> Path:
        """Tune's experiment folder."""
        return self.storage / self.run_name

    @property
    def state_dir(self) -> Path:
        """The sweep's own state (MLflow ids, ASHA rungs), beside Tune's folder and not in
        it: Tune copies its local staging folder over the experiment folder when it
        syncs, which would put back stale copies of files written there."""
        return self.storage / STATE_FOLDER / self.run_name


def _no_repeats(kind: str, asked) -> None:
    """A value given twice would run the same cells twice and duplicate rows in every
    table; refusing it (rather than dropping the copy) keeps the command and the sweep
    it ran the same thing."""
    seen, repeated = set(), []
    for a in asked or ():
        if a in seen and a not in repeated:
            repeated.append(a)
        seen.add(a)
    if repeated:
        raise ConfigError(
            f"--{kind} {','.join(map(str, asked))}: {','.join(map(str, repeated))} given "
            "more than once; allowed: each value once"
        )


# A run name becomes a folder under the storage and results paths: a plain name only, so
# it can never point outside them ("../x", "/tmp/x", "a/b").
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def check_run_name(name: str) -> str:
    if not RUN_NAME.fullmatch(name) or ".." in name:
        raise ConfigError(
            f"--name {name!r} is not a plain name; allowed: 1-128 letters, digits, '_', '-' "
            "and '.', starting with a letter or digit, no '..' or path separators"
        )
    return name


def _subset(kind: str, asked, allowed: tuple) -> tuple:
    _no_repeats(kind, asked)
    if asked is None:
        return allowed
    bad = [a for a in asked if a not in allowed]
    if bad or not asked:
        raise ConfigError(
            f"--{kind} {','.join(map(str, asked))}: {bad or 'empty'} not "
            f"allowed; allowed: {','.join(map(str, allowed))}"
        )
    return tuple(asked)


def make_plan(sweep: SweepDef, args: argparse.Namespace) -> Plan:
    """Resolve and validate every trial config the sweep can produce; raise ConfigError."""
    if args.budget not in sweep.budgets:
        raise ConfigError(
            f"--budget {args.budget!r} is unknown; allowed: {', '.join(sweep.budgets)}"
        )
    b = sweep.budgets[args.budget]
    models = _subset("models", args.models, b.models or sweep.models)
    unknown = [m for m in models if m not in list_models()]
    if unknown:
        raise ConfigError(f"model(s) {unknown} not registered; allowed: {', '.join(list_models())}")
    optimizers = _subset("optimizers", args.optimizers, b.optimizers or sweep.optimizers)
    if args.lrs is not None and not args.lrs:
        raise ConfigError(
            "--lrs is empty; allowed: comma-separated learning rates, e.g. 0.001,0.01"
        )
    _no_repeats("lrs", args.lrs)
    lrs = tuple(args.lrs) if args.lrs else (b.lrs or sweep.lrs)
    epochs = b.epochs if args.epochs is None else args.epochs
    cpus = b.cpus_per_trial if args.cpus_per_trial is None else args.cpus_per_trial
    if cpus < 1:
        raise ConfigError(f"--cpus-per-trial {cpus}: allowed: an integer >= 1")
    base = {
        "epochs": epochs,
        "batch_size": b.batch_size,
        "image_size": b.image_size,
        "seed": args.seed,
        "num_threads": cpus,
        "channels_last": b.channels_last,
        **sweep.fixed_config,
    }
    if args.momentum is not None:
        base["momentum"] = args.momentum
    if args.no_pretrained:
        base["pretrained"] = False
    grace = b.grace_period if args.grace_period is None else args.grace_period
    rf = b.reduction_factor if args.reduction_factor is None else args.reduction_factor
    if sweep.cells and args.data:
        raise ConfigError(
            f"--data {args.data}: this sweep fills its table's rows from registered datasets; "
            "allowed: --dataset (a subset of the rows' datasets), or --data with a one-dataset "
            "sweep such as mnist_optimizers"
        )
    if args.data and args.dataset:
        # one or the other: silently training on the folder while --dataset names another
        # set would label the results wrongly
        raise ConfigError(
            f"--data {args.data} and --dataset {args.dataset}: give one; --data trains on "
            "a folder of class folders, --dataset on a registered dataset"
        )
    file_groups(args)  # checked here, before anything is written; load_one uses it
    if sweep.cells:
        cells, datasets = plan_cells(sweep, b, args, base, models, optimizers)
    else:
        dataset = sweep.dataset if args.dataset is None else args.dataset
        cells, datasets = None, ("image_folder" if args.data else dataset,)
        if dataset not in list_datasets():
            raise ConfigError(
                f"--dataset {dataset!r} is unknown; allowed: {', '.join(list_datasets())}"
            )
        base["dataset"] = datasets[0]
    # Validate every grid cell (or, for Optuna, every category at both ends of the lr range).
    lr_values = lrs if args.search == "grid" else sweep.lr_range
    if cells is None:
        for model, opt, lr in itertools.product(models, optimizers, lr_values):
            TrialConfig.from_dict({**base, "model": model, "optimizer": opt, "lr": lr})
    else:
        for cell, lr in itertools.product(cells.values(), lr_values):
            TrialConfig.from_dict({**cell, "lr": lr} if args.search == "optuna" else cell)
    if not 1 <= grace <= epochs:
        raise ConfigError(f"--grace-period {grace}: allowed 1..{epochs} (the epochs)")
    if rf < 2:
        raise ConfigError(f"--reduction-factor {rf}: allowed >= 2")
    samples = b.num_samples if args.num_samples is None else args.num_samples
    if samples < 1:
        raise ConfigError(f"--num-samples {samples}: allowed >= 1")
    # Ray reads max_failures -1 as "retry forever" and max_concurrent 0 as "no limit", and
    # the `rf < 2` / `gpus > cluster` checks let nan and inf through: refuse them all here.
    if args.max_failures < 0:
        raise ConfigError(f"--max-failures {args.max_failures}: allowed: an integer >= 0")
    if args.max_concurrent is not None and args.max_concurrent < 1:
        raise ConfigError(
            f"--max-concurrent {args.max_concurrent}: allowed: an integer >= 1 (unset: no limit)"
        )
    if not rf < float("inf"):
        raise ConfigError(f"--reduction-factor {rf}: allowed: a finite number >= 2")
    gpus = args.gpus_per_trial
    if gpus is not None and not 0 <= gpus < float("inf"):
        raise ConfigError(f"--gpus-per-trial {gpus:g}: allowed: a number >= 0")
    if args.name is not None:
        check_run_name(args.name)
    check_local_cpus(cpus, args.ray_address)
    results_dir = Path(args.results_dir or os.environ.get(RESULTS_ENV) or "results").resolve()
    storage = Path(args.storage_path or os.environ.get(STORAGE_ENV) or "~/ray_results").expanduser()
    plan = Plan(
        sweep,
        b,
        args.search,
        models,
        optimizers,
        lrs,
        base,
        samples,
        b.asha and not args.no_asha,
        grace,
        rf,
        results_dir / sweep.name,
        args.name or f"{b.name}-{time.strftime('%Y%m%d-%H%M%S')}",
        datasets,
        cells,
        storage.resolve(),
    )
    if args.mlflow_wait < 0:
        raise ConfigError(f"--mlflow-wait {args.mlflow_wait:g}: allowed >= 0 seconds")
    if not args.resume and args.name and (plan.experiment_dir / "tuner.pkl").exists():
        raise ConfigError(
            f"--name {args.name!r}: {plan.experiment_dir} holds an earlier run; allowed: a "
            "new name, or --resume to continue that run"
        )
    if args.resume:
        from sweeps.resume import check_same_sweep, find_experiment

        folder = find_experiment(plan.storage, sweep.name, args.name)
        plan = replace(plan, run_name=folder.name)
        plan = replace(plan, resume=check_same_sweep(folder, plan))
    return plan


def plan_cells(sweep: SweepDef, b: Budget, args, base: dict, models, optimizers):
    """The table rows this run fills: the budget's rows, filtered by --models,
    --optimizers and --dataset, expanded over --lrs when given; each a full config."""
    rows = sweep.cells(b)
    used = tuple(dict.fromkeys(c["dataset"] for c in rows.values()))
    asked = None if args.dataset is None else tuple(d for d in args.dataset.split(",") if d)
    datasets = _subset("dataset", asked, used)
    for d in datasets:
        if d not in list_datasets():
            raise ConfigError(f"dataset {d!r} is unknown; allowed: {', '.join(list_datasets())}")
    cells = {}
    for label, row in rows.items():
        if row["model"] in models and row["optimizer"] in optimizers and row["dataset"] in datasets:
            for lr in args.lrs or (row["lr"],):
                key = f"{label} (lr {lr:g})" if args.lrs else label
                cell = {**base, **row, "lr": lr, "label": key}
                if args.epochs is not None:
                    cell["epochs"] = args.epochs
                cells[key] = cell
    if not cells:
        raise ConfigError(
            f"no table row matches --models/--optimizers/--dataset; rows: {', '.join(rows)}"
        )
    return cells, datasets


def check_local_cpus(cpus: int, address: str | None) -> None:
    """A sweep without a cluster address starts a private Ray with this machine's CPUs, so
    a trial asking for more could never be placed (Tune would wait forever): refuse it
    before anything starts. On a cluster the execute step checks every node once joined."""
    if address or os.environ.get("RAY_ADDRESS"):
        return
    have = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if cpus > have:
        raise ConfigError(
            f"--cpus-per-trial {cpus}: this machine has {have} CPUs for the private Ray a "
            f"sweep without --ray-address starts; allowed: 1..{have}, or --ray-address of a "
            "cluster with a larger node"
        )


def check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"results dir {folder} is not writable ({exc.strerror}); "
            f"pass --results-dir or set ${RESULTS_ENV}"
        ) from None


def check_ray_address(address: str | None, timeout: float = 3.0) -> None:
    """Fail in seconds, naming the address, when the Ray head to join (``--ray-address``,
    else ``$RAY_ADDRESS``) refuses a TCP connection; ``ray.init`` would retry for a minute
    first. ``auto``, ``local`` and no address at all are left to ``ray.init``."""
    import socket

    where = "--ray-address" if address else "$RAY_ADDRESS"
    address = address or os.environ.get("RAY_ADDRESS")
    if not address or address in ("auto", "local"):
        return
    allowed = (
        "allowed: the host:port of a running Ray head (ray start --head; make up), "
        "ray://host:port, auto, or no address for a private local cluster"
    )
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    host = host.strip("[]")  # [::1]:6379
    if not host or not port.isdigit() or "/" in hostport:
        raise ConfigError(f"{where} {address!r} is not host:port; {allowed}")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, OverflowError) as exc:  # OverflowError: a port above 65535
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(
            f"{where} {address!r}: no Ray head answers ({reason}); {allowed}"
        ) from None


def file_groups(args: argparse.Namespace) -> FileGroups | None:
    """--group-pattern / --groups-csv as a FileGroups, checked; None when neither is given
    (a --data folder is then split by image, which the data info says)."""
    pattern, csv = args.group_pattern, args.groups_csv
    if pattern is None and csv is None:
        return None
    flag, value = ("--group-pattern", pattern) if csv is None else ("--groups-csv", csv)
    if not args.data:
        raise ConfigError(
            f"{flag} {value}: names the case of each file of a --data folder; allowed: only "
            "with --data (registered datasets bring their own cases)"
        )
    if pattern is not None and csv is not None:
        raise ConfigError(
            f"--group-pattern {pattern} and --groups-csv {csv}: give one; allowed: a file-name "
            "pattern or a CSV of file,group"
        )
    if csv is not None:
        path = Path(csv).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(
                f"--groups-csv {csv}: no such file; allowed: a CSV with columns file and group"
            )
        return FileGroups(csv=path)
    allowed = r"allowed: a regular expression with a named group (?P<group>...)"
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(
            f"--group-pattern {pattern!r} does not compile ({exc}); {allowed}"
        ) from None
    if "group" not in rx.groupindex:
        raise ConfigError(f"--group-pattern {pattern!r} has no group named 'group'; {allowed}")
    return FileGroups(pattern=pattern)


def load_data(plan: Plan, args: argparse.Namespace) -> dict[str, DataSplits]:
    """Every dataset the plan uses, decoded once on the driver: {name: splits}."""
    return {name: load_one(plan, args, name) for name in plan.datasets}


def load_one(plan: Plan, args: argparse.Namespace, name: str) -> DataSplits:
    t0 = time.perf_counter()
    b = plan.budget
    print(f"[data] decoding {args.data or name} once for all trials ...", flush=True)
    root = (
        Path(args.data).expanduser().resolve() if args.data else resolve_data_root(args.data_root)
    )
    data = load_splits(
        name,
        root=root,
        image_size=b.image_size,
        split=args.split,
        download=args.download,
        val_fraction=plan.sweep.val_fraction,
        split_fractions=plan.sweep.split_fractions,
        seed=args.seed,
        train_limit=b.train_limit,
        val_limit=b.val_limit,
        test_limit=b.test_limit,
        groups=file_groups(args),
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


def fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def main(
    sweep: SweepDef, argv: list[str] | None = None, doc: str | None = None, prog: str | None = None
) -> int:
    """Parse flags, validate, run the sweep, write results; the process exit code."""
    args = build_parser(sweep, doc, prog).parse_args(argv)
    try:
        plan = make_plan(sweep, args)
        uri = resolve_tracking_uri(args.tracking_uri)
        check_tracking_server(uri)
        check_ray_address(args.ray_address)
        check_writable(plan.results_dir)
        data = load_data(plan, args)
    except (ConfigError, DataError, TrackingError) as exc:
        return fail(str(exc))
    from sweeps.execute import run_plan

    return run_plan(plan, args, data, uri)
