"""The plan of a sweep: every flag resolved against the budget, every trial config
validated, before Ray starts or anything is written.

:func:`make_plan` is the only place that reads the flags; everything after it (loading
the data, running the Tuner, writing results) takes the :class:`Plan` alone.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from sweeps import run_record
from sweeps.settings import STATE_FOLDER, optuna_storage, results_dir, storage_path
from sweeps.sweep import Budget, SweepDef, cell_key
from sweeps.tracking_uri import resolve_tracking_uri
from trainables.config import ConfigError, TrialConfig
from trainables.data import FileGroups, data_key, list_datasets
from trainables.models import get_spec, list_models
from trainables.models import weights as model_weights


@dataclass(frozen=True)
class DataSource:
    """Which images the trials see and how they are split."""

    datasets: tuple[str, ...]  # registered names ("image_folder" for --data)
    folder: Path | None  # --data: a folder of class folders
    root_flag: str | None  # --data-root as given (None: $CNNSWEEP_DATA_ROOT)
    split: str  # pooled sets: "grouped" by case or "random" by image
    download: bool  # torchvision's copy, from the network if needed
    groups: FileGroups | None  # --group-pattern / --groups-csv
    seed: int


@dataclass(frozen=True)
class Resources:
    cpus_per_trial: int  # = torch threads
    gpus_per_trial: float | None  # None: 1 when the cluster has GPUs, else 0 (see cluster)
    max_concurrent: int | None  # None: as many as fit
    ray_address: str | None  # None: $RAY_ADDRESS, else a private local Ray


@dataclass(frozen=True)
class TuneOptions:
    search: str  # "grid" or "optuna"
    num_samples: int  # Optuna trials
    asha: bool
    grace_period: int  # epochs
    reduction_factor: float
    quorum: int  # ASHA: records a rung needs before it judges (sweeps.asha); 0: none
    max_failures: int  # restarts of a crashed trial from its checkpoint
    seed: int  # Optuna's sampler
    seeds: tuple[int, ...]  # each grid cell once per seed (trial init and shuffling)


@dataclass(frozen=True)
class Weights:
    """Where the models' first weights come from, checked before anything runs."""

    choice: str | None  # "imagenet", "scratch", a file; None: each sweep's own recipe
    folder: Path | None  # --weights-dir / $CNNSWEEP_WEIGHTS_DIR: searched first
    files: dict[str, dict]  # model -> {"file", "sha256", "checked"}: what will be read
    # label -> why: cells left out because their weights are not here (Budget.weights_or_skip)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def config(self) -> dict:
        """The trial-config keys this choice sets (on every trial, table rows included)."""
        keys: dict = {}
        if self.choice in ("imagenet", "scratch"):
            keys["pretrained"] = self.choice == "imagenet"
        elif self.choice is not None:
            keys |= {"pretrained": False, "weights_path": self.choice}
        if self.folder is not None:
            keys["weights_dir"] = str(self.folder)
        return keys


@dataclass(frozen=True)
class Plan:
    """Everything resolved from flags and budget, validated, before Ray starts."""

    sweep: SweepDef
    budget: Budget
    models: tuple[str, ...]
    optimizers: tuple[str, ...]
    lrs: tuple[float, ...]
    base_config: dict  # the keys every trial config shares
    cells: dict[str, dict] | None  # label -> full trial config (table-row sweeps)
    data: DataSource
    resources: Resources
    tune: TuneOptions
    tracking_uri: str
    mlflow_wait_s: float  # at the end, how long to wait for an unreachable MLflow
    results_dir: Path  # results/<sweep>
    storage: Path  # Tune's experiments and checkpoints
    run_name: str
    weights: Weights
    optuna_storage: str  # SQLAlchemy URL of the study's database (may hold a password)
    resume: dict | None = None  # the run record of the run --resume continues

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

    @property
    def max_epochs(self) -> int:
        """The most epochs any trial runs (ASHA's max_t)."""
        configs = (self.cells or {"": self.base_config}).values()
        return max(c["epochs"] for c in configs)

    @property
    def protected(self) -> frozenset[str]:
        """The cells (:func:`cell_key`) a paper reports, which ASHA never stops: every row
        of a table-row sweep, the grid cells the sweep declares published; none under
        Optuna (its samples explore)."""
        if self.tune.search != "grid":
            return frozenset()
        if self.cells is not None and self.sweep.cells is not None:
            return frozenset(self.cells)
        published = self.sweep.published_cell or (lambda cfg: False)
        if self.cells is not None:  # a grid with leak-free twins: a twin is its cell's peer
            configs = self.cells.values()
        else:
            cells = itertools.product(self.models, self.optimizers, self.lrs)
            configs = ({"model": m, "optimizer": o, "lr": lr} for m, o, lr in cells)
        return frozenset(cell_key(c) for c in configs if published(c))

    @property
    def asha_groups(self) -> dict[str, str]:
        """Table rows -> their dataset: ASHA ranks a trial only against its own dataset's."""
        return {
            label: str(data_key(c.get("dataset", ""), c.get("split")))
            for label, c in (self.cells or {}).items()
        }

    @property
    def other_splits(self) -> tuple[tuple[str, str], ...]:
        """(dataset, split) that trials use besides the plan's split: leak-free twins."""
        configs = (self.cells or {}).values()
        return tuple(dict.fromkeys((c["dataset"], c["split"]) for c in configs if c.get("split")))

    @property
    def fingerprint(self) -> dict:
        """What makes two invocations the same sweep (the run name and paths aside)."""
        t = self.tune
        return {
            "sweep": self.sweep.name,
            "budget": self.budget.name,
            "search": t.search,
            "models": self.models,
            "optimizers": self.optimizers,
            "lrs": self.lrs,
            "base_config": self.base_config,
            "cells": self.cells,
            "num_samples": t.num_samples,
            "asha": t.asha,
            "seeds": t.seeds,
            "grace_period": t.grace_period,
            "reduction_factor": t.reduction_factor,
            "datasets": self.data.datasets,
        }


def make_plan(sweep: SweepDef, args: argparse.Namespace) -> Plan:
    """Resolve and validate every trial config the sweep can produce; raise ConfigError."""
    budget = choose_budget(sweep, args.budget)
    models, optimizers, lrs = choose_axes(sweep, budget, args)
    weights = choose_weights(args)
    base = base_config(sweep, budget, args) | weights.config
    data, cells = choose_data(sweep, budget, args, base, models, optimizers)
    if cells is None and args.search == "grid":
        cells = leak_free_twins(budget, data, base, models, optimizers, lrs)
    if cells is not None:  # a row's own "pretrained" gives way to the flags
        cells = {label: cell | weights.config for label, cell in cells.items()}
    weights = check_weight_files(weights, base, cells, models)
    cells, weights = skip_missing_weights(budget, weights, cells)
    check_trial_configs(
        base, cells, models, optimizers, lrs if args.search == "grid" else None, sweep.lr_range
    )
    tune_options = choose_tune_options(budget, args, base["epochs"])
    resources = choose_resources(args, base["num_threads"])
    if args.name is not None:
        check_run_name(args.name)
    check_local_cpus(resources.cpus_per_trial, resources.ray_address)
    if args.mlflow_wait < 0:
        raise ConfigError(f"--mlflow-wait {args.mlflow_wait:g}: allowed >= 0 seconds")
    plan = Plan(
        sweep=sweep,
        budget=budget,
        models=models,
        optimizers=optimizers,
        lrs=lrs,
        base_config=base,
        cells=cells,
        data=data,
        resources=resources,
        tune=tune_options,
        tracking_uri=resolve_tracking_uri(args.tracking_uri),
        mlflow_wait_s=args.mlflow_wait,
        results_dir=results_dir(args.results_dir).resolve() / sweep.name,
        storage=storage_path(args.storage_path).resolve(),
        run_name=args.name or f"{budget.name}-{time.strftime('%Y%m%d-%H%M%S')}",
        weights=weights,
        optuna_storage=optuna_storage(
            args.optuna_storage, storage_path(args.storage_path).resolve()
        ),
    )
    return with_run(plan, args.name, args.resume)


def choose_budget(sweep: SweepDef, name: str) -> Budget:
    if name not in sweep.budgets:
        raise ConfigError(f"--budget {name!r} is unknown; allowed: {', '.join(sweep.budgets)}")
    return sweep.budgets[name]


def choose_axes(sweep: SweepDef, b: Budget, args) -> tuple[tuple, tuple, tuple]:
    """Models, optimizers and grid learning rates: the flags' subsets of the budget's."""
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
    return models, optimizers, lrs


def base_config(sweep: SweepDef, b: Budget, args) -> dict:
    """The trial keys every trial shares (the model, optimizer and lr vary)."""
    cpus = b.cpus_per_trial if args.cpus_per_trial is None else args.cpus_per_trial
    if cpus < 1:
        raise ConfigError(f"--cpus-per-trial {cpus}: allowed: an integer >= 1")
    base = {
        "epochs": b.epochs if args.epochs is None else args.epochs,
        "batch_size": b.batch_size,
        "image_size": b.image_size,
        "seed": args.seed,
        "pretrained": b.weights == "imagenet",
        "num_threads": cpus,
        "channels_last": b.channels_last,
        **sweep.fixed_config,
    }
    if args.momentum is not None:
        base["momentum"] = args.momentum
    return base


WEIGHTS_ALLOWED = "allowed: imagenet, scratch, or the path of a weights file (a state_dict)"


def choose_weights(args) -> Weights:
    """--weights, --no-pretrained (= --weights scratch) and --weights-dir, checked to exist."""
    choice = args.weights
    if args.no_pretrained and choice not in (None, "scratch"):
        raise ConfigError(
            f"--no-pretrained and --weights {choice}: give one; allowed: --weights scratch "
            "(the same as --no-pretrained), imagenet or a file"
        )
    choice = "scratch" if args.no_pretrained else choice
    if choice not in (None, "imagenet", "scratch"):
        path = Path(choice).expanduser()
        if not path.is_file():
            what = "is a folder (a folder of ImageNet files is --weights-dir)"
            raise ConfigError(
                f"--weights {choice}: {what if path.is_dir() else 'no such file'}; "
                f"{WEIGHTS_ALLOWED}"
            )
        try:
            model_weights.check_file(path)
        except model_weights.WeightsError as exc:
            raise ConfigError(f"--weights {choice}: {exc}") from None
        choice = str(path.resolve())
    flag = "--weights-dir" if args.weights_dir else f"${model_weights.WEIGHTS_DIR_ENV}"
    folder = args.weights_dir or os.environ.get(model_weights.WEIGHTS_DIR_ENV) or None
    if folder is not None and not Path(folder).expanduser().is_dir():
        raise ConfigError(
            f"{flag} {folder}: no such folder; allowed: a folder of checkpoint files under "
            "the names torchvision and timm publish (`cnnsweep weights fetch` fills one)"
        )
    return Weights(choice, Path(folder).expanduser().resolve() if folder else None, {})


def check_weight_files(w: Weights, base: dict, cells, models) -> Weights:
    """Check (sha256) the weights-folder file of every model that will load ImageNet
    weights, so a wrong file fails now, not in every trial; record what will be read."""
    configs = list(cells.values()) if cells is not None else [{**base, "model": m} for m in models]
    files = {}
    for cfg in configs:
        label = get_spec(cfg["model"]).imagenet
        if w.folder is None or not cfg.get("pretrained") or not label or cfg["model"] in files:
            continue
        try:
            found = model_weights.find(label, w.folder)
        except model_weights.WeightsError as exc:
            raise ConfigError(f"--weights-dir: {exc}") from None
        if found is not None:
            files[cfg["model"]] = {
                "file": found.path.name,
                "sha256": found.sha256,
                "checked": found.checked,
            }
    return replace(w, files=files)


def skip_missing_weights(b: Budget, w: Weights, cells) -> tuple[dict | None, Weights]:
    """With a budget that runs ImageNet-weights cells only where the file is here
    (:attr:`Budget.weights_or_skip`): the cells left, and ``w`` recording the others."""
    if cells is None or not b.weights_or_skip:
        return cells, w
    kept, skipped = {}, {}
    for label, cell in cells.items():
        name = get_spec(cell["model"]).imagenet
        here = name and (cell["model"] in w.files or model_weights.cached(name) is not None)
        if cell.get("pretrained") and not here:
            skipped[label] = (
                f"no_weights: not run: no {name or 'ImageNet'} weights file here (weights "
                "folder or the library's cache), and from scratch the row would not be the "
                f"paper's transfer learning; `cnnsweep weights fetch {cell['model']}` supplies it"
            )
        else:
            kept[label] = cell
    if not kept:
        raise ConfigError(
            f"budget {b.name}: every selected row needs ImageNet weights that are not here "
            f"({', '.join(skipped)}); allowed: --weights-dir with their files, or "
            "--weights scratch to train them from scratch"
        )
    return kept, replace(w, skipped=skipped)


def choose_data(sweep: SweepDef, b: Budget, args, base: dict, models, optimizers):
    """The data source, and the table rows (None for grid sweeps); sets the base
    config's dataset for one-dataset sweeps."""
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
    groups = file_groups(args)
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
    folder = Path(args.data).expanduser().resolve() if args.data else None
    source = DataSource(
        datasets=datasets,
        folder=folder,
        root_flag=args.data_root,
        split=args.split or b.split,
        download=args.download,
        groups=groups,
        seed=args.seed,
    )
    return source, cells


def leak_free_twins(b: Budget, data: DataSource, base: dict, models, optimizers, lrs):
    """A by-image ("random") preset's grid as table rows, each cell of the budget's
    ``leak_free`` models beside a twin on the grouped split, so the tables show what the
    paper's leak is worth. None when there is nothing to twin: another split, none of
    those models, or a folder with no case groups (its "grouped" split would be by image)."""
    twins = [m for m in models if m in b.leak_free]
    if data.split != "random" or not twins or (data.folder is not None and data.groups is None):
        return None
    cells = {}
    for m, o, lr in itertools.product(models, optimizers, lrs):
        label = f"{m} / {o} / lr {lr:g}"
        cells[label] = {**base, "model": m, "optimizer": o, "lr": lr, "label": label}
        if m in twins:
            twin = f"{label} / leak-free split"
            cells[twin] = {**cells[label], "label": twin, "split": "grouped"}
    return cells


def check_trial_configs(base, cells, models, optimizers, grid_lrs, lr_range) -> None:
    """Build every grid cell's (or, for Optuna, every category's at both ends of the lr
    range) TrialConfig, so a bad combination fails now, not in trial 17."""
    lr_values = grid_lrs if grid_lrs is not None else lr_range
    if cells is None:
        for model, opt, lr in itertools.product(models, optimizers, lr_values):
            TrialConfig.from_dict({**base, "model": model, "optimizer": opt, "lr": lr})
    else:
        for cell, lr in itertools.product(cells.values(), lr_values):
            TrialConfig.from_dict(cell if grid_lrs is not None else {**cell, "lr": lr})


def choose_tune_options(b: Budget, args, epochs: int) -> TuneOptions:
    grace = b.grace_period if args.grace_period is None else args.grace_period
    rf = b.reduction_factor if args.reduction_factor is None else args.reduction_factor
    if not 1 <= grace <= epochs:
        raise ConfigError(f"--grace-period {grace}: allowed 1..{epochs} (the epochs)")
    if rf < 2:
        raise ConfigError(f"--reduction-factor {rf}: allowed >= 2")
    samples = b.num_samples if args.num_samples is None else args.num_samples
    if samples < 1:
        raise ConfigError(f"--num-samples {samples}: allowed >= 1")
    # Ray reads max_failures -1 as "retry forever", and the `rf < 2` check lets nan and
    # inf through: refuse them here.
    if args.max_failures < 0:
        raise ConfigError(f"--max-failures {args.max_failures}: allowed: an integer >= 0")
    if not rf < float("inf"):
        raise ConfigError(f"--reduction-factor {rf}: allowed: a finite number >= 2")
    seeds = b.seeds if args.seeds is None else args.seeds
    if seeds < 1:
        raise ConfigError(f"--seeds {seeds}: allowed: an integer >= 1")
    if seeds > 1 and args.search != "grid":
        raise ConfigError(
            f"--seeds {seeds} with --search {args.search}: allowed only with --search grid "
            "(Optuna samples new cells; it does not repeat one)"
        )
    # rf^2 + 1: a trial is judged against at least rf^2 others, so the cutoff (the top
    # 1/rf) rests on rf trials above it, not on the one best early trial. With rf + 1 the
    # bench's winner, slow at epoch 1, met a rung whose cutoff the grid's two fastest
    # starters set, and was stopped (bench/asha_efficiency.py: -0.8 pp)
    quorum = math.ceil(rf * rf) + 1 if args.asha_quorum is None else args.asha_quorum
    if quorum < 0:
        raise ConfigError(f"--asha-quorum {quorum}: allowed: an integer >= 0 (0: no quorum)")
    if args.seed + seeds > 2**32:
        raise ConfigError(f"--seed {args.seed} --seeds {seeds}: the last seed must be < 2**32")
    return TuneOptions(
        search=args.search,
        num_samples=samples,
        asha=b.asha and not args.no_asha,
        grace_period=grace,
        reduction_factor=rf,
        quorum=quorum,
        max_failures=args.max_failures,
        seed=args.seed,
        seeds=tuple(range(args.seed, args.seed + seeds)),
    )


def choose_resources(args, cpus: int) -> Resources:
    # Ray reads max_concurrent 0 as "no limit", and `gpus > cluster` lets nan and inf
    # through: refuse them here.
    if args.max_concurrent is not None and args.max_concurrent < 1:
        raise ConfigError(
            f"--max-concurrent {args.max_concurrent}: allowed: an integer >= 1 (unset: no limit)"
        )
    gpus = args.gpus_per_trial
    if gpus is not None and not 0 <= gpus < float("inf"):
        raise ConfigError(f"--gpus-per-trial {gpus:g}: allowed: a number >= 0")
    return Resources(
        cpus_per_trial=cpus,
        gpus_per_trial=gpus,
        max_concurrent=args.max_concurrent,
        ray_address=args.ray_address,
    )


def with_run(plan: Plan, name: str | None, resume: bool) -> Plan:
    """The plan with the run it starts (a new name must be free) or continues (--resume:
    the run must exist and have been asked for the same sweep)."""
    if not resume and name and (plan.experiment_dir / "tuner.pkl").exists():
        raise ConfigError(
            f"--name {name!r}: {plan.experiment_dir} holds an earlier run; allowed: a "
            "new name, or --resume to continue that run"
        )
    if not resume:
        return plan
    folder = run_record.find_run(plan.storage, plan.sweep.name, name)
    plan = replace(plan, run_name=folder.name)
    return replace(plan, resume=run_record.check_same_sweep(folder, plan.fingerprint))


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


def check_local_cpus(cpus: int, address: str | None) -> None:
    """A sweep without a cluster address starts a private Ray with this machine's CPUs, so
    a trial asking for more could never be placed (Tune would wait forever): refuse it
    before anything starts. On a cluster, joining it checks every node."""
    if address or os.environ.get("RAY_ADDRESS"):
        return
    have = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if cpus > have:
        raise ConfigError(
            f"--cpus-per-trial {cpus}: this machine has {have} CPUs for the private Ray a "
            f"sweep without --ray-address starts; allowed: 1..{have}, or --ray-address of a "
            "cluster with a larger node"
        )


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
    return FileGroups(pattern=check_group_pattern(pattern))


def check_group_pattern(pattern: str) -> str:
    allowed = r"allowed: a regular expression with a named group (?P<group>...)"
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(
            f"--group-pattern {pattern!r} does not compile ({exc}); {allowed}"
        ) from None
    if "group" not in rx.groupindex:
        raise ConfigError(f"--group-pattern {pattern!r} has no group named 'group'; {allowed}")
    return pattern
