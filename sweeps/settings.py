"""Names, defaults and the process environment of a sweep; no heavy imports, no side
effects when imported.

Every default a user can override (results folder, Tune storage, tracking URI) is named
here once, with the environment variable that overrides it, so the CLI, the sweep and
the tests agree without importing the machinery.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from trainables.progress import LOG_LINE_RE

RESULTS_ENV = "CNNSWEEP_RESULTS_DIR"
DEFAULT_RESULTS = "results"
STORAGE_ENV = "CNNSWEEP_STORAGE_PATH"
DEFAULT_STORAGE = "~/ray_results"  # Tune's own default, so its tools find our runs
STATE_FOLDER = ".cnnsweep"  # under the storage path: one folder per run (see run_record)
# every other table is a paper's
NOT_PAPER_TABLES = ("trials", "epochs", "asha_decisions", "importance")
OPTUNA_STORAGE_ENV = "CNNSWEEP_OPTUNA_STORAGE"
OPTUNA_DB = "optuna.db"  # the default study storage's file, under the Tune storage path
TRACKING_ENV = "MLFLOW_TRACKING_URI"
DEFAULT_TRACKING_URI = "http://127.0.0.1:5000"


def results_dir(flag: str | None) -> Path:
    """Where result tables go: ``--results-dir``, else ``$CNNSWEEP_RESULTS_DIR``, else ./results."""
    return Path(flag or os.environ.get(RESULTS_ENV) or DEFAULT_RESULTS).expanduser()


def storage_path(flag: str | None) -> Path:
    """Tune's storage: ``--storage-path``, else ``$CNNSWEEP_STORAGE_PATH``, else ~/ray_results."""
    return Path(flag or os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE).expanduser()


def optuna_storage(flag: str | None, storage: Path) -> str:
    """Where the sweep's Optuna study goes: ``--optuna-storage``, else
    ``$CNNSWEEP_OPTUNA_STORAGE``, else SQLite at ``<storage path>/optuna.db``."""
    return flag or os.environ.get(OPTUNA_STORAGE_ENV) or f"sqlite:///{storage / OPTUNA_DB}"


def process_environment(
    argv: Sequence[str], environ: Mapping[str, str], interactive: bool
) -> dict[str, str]:
    """The environment defaults a sweep's driver needs, for :func:`apply_environment`.

    Ray reads several of them once, when it is first imported, so they must be set before
    that (the sweep's ``main`` applies them first and imports Ray after).
    """
    env = {
        "RAY_USAGE_STATS_ENABLED": "0",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        # The driver prints the trials' output. Progress lines of different trials differ
        # only in numbers, which Ray's log de-duplication ignores: it would print one
        # trial's line and "[repeated 3x across cluster]" for the rest.
        "RAY_DEDUP_LOGS_ALLOW_REGEX": LOG_LINE_RE,
        # Tune snapshots its state whenever a trial checkpoints with num_to_keep set; with
        # epoch-long iterations that is cheap, so its "may become a bottleneck" warning
        # is noise.
        "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
        # MLflow prints "View run/experiment at .../#/experiments/<id>" for every run it
        # closes: 3.17's GenAI overview, not the runs table. The sweep prints its own link
        # (sweeps.experiment_view), once.
        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
        # Fail in seconds, not minutes, when MLflow is briefly gone; the logger retries.
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    }
    # A private local Ray (no --ray-address and no $RAY_ADDRESS) must stay on 127.0.0.1;
    # without this Ray binds the machine's external address even when told 127.0.0.1. A
    # driver joining a cluster keeps whatever the cluster was started with.
    if not any(a.startswith("--ray-address") for a in argv) and not environ.get("RAY_ADDRESS"):
        env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    # In a log (not a terminal) Ray's colour codes around "(train_trial pid=...)" are noise.
    if not interactive:
        env["RAY_COLOR_PREFIX"] = "0"
    return env


def apply_environment(argv: Sequence[str] | None = None) -> None:
    """Set :func:`process_environment`'s defaults in this process (a value the user set
    wins); call it before Ray is imported."""
    argv = sys.argv[1:] if argv is None else argv
    for key, value in process_environment(argv, os.environ, sys.stdout.isatty()).items():
        os.environ.setdefault(key, value)
