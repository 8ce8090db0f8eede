"""What a paper script declares: its budgets and its sweep (dataset, search space, tables).

Plain records with no heavy imports: a paper script is a :class:`SweepDef` plus the
function that turns the trials table into the paper's tables.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd


@dataclass(frozen=True)
class Budget:
    """A named preset: how much data, compute and resolution a sweep spends."""

    name: str
    description: str
    epochs: int
    image_size: int  # px, square
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
    seeds: int = 1  # each cell repeated with this many seeds (tolerance = 2 x their std)
    # where the models' first weights come from unless --weights says: "imagenet"
    # (fine-tuning, as paper 003 most likely did) or "scratch"
    weights: str = "scratch"
    # pooled datasets (chromosomes): "grouped" keeps each case in one split (leak-free);
    # "random" splits by image, as a paper did that its preset follows (--split overrides)
    split: str = "grouped"
    # with split "random": these models also train on the grouped split, each grid cell
    # twice, so the tables show the leak-free result beside the paper's protocol (the
    # size of the leak). Needs case groups (registered chromosome sets, --groups-csv).
    leak_free: tuple[str, ...] = ()
    # True: a cell that starts from ImageNet weights runs only where its file is here (the
    # weights folder or the library's cache). Without it the cell would train from
    # scratch, which is not the paper's experiment: its table row says `no_weights`
    # instead, and its minutes go to the comparable cells.
    weights_or_skip: bool = False
    expected_gap: str = ""  # why this budget's numbers differ from the paper's

    def __post_init__(self) -> None:
        if self.weights not in ("imagenet", "scratch"):
            raise ValueError(
                f"Budget {self.name}: weights {self.weights!r}; allowed imagenet, scratch"
            )
        if self.split not in ("grouped", "random"):
            raise ValueError(f"Budget {self.name}: split {self.split!r}; allowed grouped, random")


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
    # config -> True for a cell the paper reports: it trains as the paper trained it and
    # ASHA never stops it (None: every cell is published, as in table-row sweeps)
    published_cell: Callable[[dict], bool] | None = None


def cell_key(config: dict) -> str:
    """The cell a trial config fills: a table row's label, else ``model|optimizer|lr``."""
    if config.get("label"):
        return str(config["label"])
    return f"{config.get('model')}|{config.get('optimizer')}|{float(config.get('lr', 0)):g}"


def sweep_def(space, **kw) -> SweepDef:
    """A SweepDef whose models, optimizers, lrs and lr range come from a search-space module."""
    return SweepDef(
        models=space.MODELS,
        optimizers=space.OPTIMIZERS,
        lrs=space.LRS,
        lr_range=space.LR_RANGE,
        **kw,
    )
