"""The flags every sweep script shares, built in functions so all scripts (and ``cnnsweep
run``) reuse them, as torchvision's reference scripts do."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from sweeps.settings import (
    DEFAULT_RESULTS,
    DEFAULT_STORAGE,
    DEFAULT_TRACKING_URI,
    OPTUNA_DB,
    OPTUNA_STORAGE_ENV,
    RESULTS_ENV,
    STORAGE_ENV,
    TRACKING_ENV,
)
from sweeps.sweep import SweepDef
from trainables.data import DATA_ROOT_ENV, list_datasets
from trainables.models.weights import WEIGHTS_DIR_ENV


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
    """The sweep's flags: what to search, which data, where things go, how it runs."""
    p = argparse.ArgumentParser(
        prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_search_flags(p, sweep)
    add_data_flags(p, sweep)
    add_output_flags(p)
    add_execution_flags(p)
    return p


def add_search_flags(p: argparse.ArgumentParser, sweep: SweepDef) -> None:
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
    p.add_argument(
        "--asha-quorum",
        type=int,
        help="records an ASHA rung needs before it judges; a trial reaching a rung with "
        "fewer waits, paused (default rf^2 + 1: 10 at rf 3; 0: Tune's ASHA as is)",
    )
    p.add_argument("--no-asha", action="store_true", help="run every trial to the end")
    p.add_argument("--seed", type=int, default=0, help="seed of splits, init and shuffling")
    p.add_argument(
        "--seeds",
        type=int,
        help="repeat each grid cell with N seeds (--seed .. --seed+N-1; the split stays "
        "--seed's); tables give mean, std and n, and the verdict's tolerance is "
        "max(floor, 2 std) (default: the budget's)",
    )
    p.add_argument(
        "--weights",
        metavar="{imagenet,scratch,PATH}",
        help="first weights: ImageNet where the model has them, from scratch, or a "
        "state_dict file (default: the sweep's recipe)",
    )
    p.add_argument(
        "--no-pretrained",
        action="store_true",
        help="train from scratch even where ImageNet weights can be had (= --weights scratch)",
    )
    p.add_argument(
        "--weights-dir",
        help=f"folder of ImageNet weight files, searched before any download (default "
        f"${WEIGHTS_DIR_ENV}); `cnnsweep weights` lists what it holds",
    )


def add_data_flags(p: argparse.ArgumentParser, sweep: SweepDef) -> None:
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
        default=None,
        help="for pooled datasets: 80/10/10 grouped by case or by image (default: the "
        "budget's; grouped unless the paper split by image)",
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
    p.add_argument("--data-root", help=f"dataset folder (default ${DATA_ROOT_ENV})")
    p.add_argument(
        "--download",
        action="store_true",
        help="use torchvision's copy, downloading it if needed (needs a network)",
    )


def add_output_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tracking-uri",
        help=f"MLflow tracking URI (default ${TRACKING_ENV}, else {DEFAULT_TRACKING_URI})",
    )
    p.add_argument(
        "--results-dir",
        help=f"where result tables go (default ${RESULTS_ENV}, else ./{DEFAULT_RESULTS})",
    )
    p.add_argument(
        "--storage-path",
        help=f"Tune storage for checkpoints (default ${STORAGE_ENV}, else "
        f"{DEFAULT_STORAGE}); must be shared by all nodes of a cluster",
    )
    p.add_argument(
        "--optuna-storage",
        help=f"database of the sweep's Optuna study, for optuna-dashboard (default "
        f"${OPTUNA_STORAGE_ENV}, else sqlite:///<storage path>/{OPTUNA_DB})",
    )
    p.add_argument("--name", help="name of the sweep run (default <budget>-<time>)")
    p.add_argument(
        "--mlflow-wait",
        type=float,
        default=120.0,
        help="at the end, seconds to wait for an unreachable MLflow server before "
        "writing the unlogged calls to a replay file (default 120)",
    )


def add_execution_flags(p: argparse.ArgumentParser) -> None:
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
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue a sweep whose driver was killed: the run --name names, else this "
        "sweep's newest run under the storage path; same flags as the original command",
    )
