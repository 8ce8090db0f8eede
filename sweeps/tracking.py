"""MLflow logging done from the sweep's driver: one parent run per sweep, one child per trial.

A Tune callback owns the child runs, so a trial that ASHA stops (its process is simply
ended) still has its run closed with a status, and every metric goes to the tracking
server named by ``--tracking-uri`` / ``$MLFLOW_TRACKING_URI`` through an explicit
``MlflowClient`` (never a silent fallback to a local ``./mlruns``). Logging failures
are kept and retried rather than crashing a sweep that may have run for hours.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

# Fail in seconds, not minutes, when the server is briefly gone; the callback retries.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")

from mlflow.entities import Metric, Param, RunTag  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID  # noqa: E402
from ray import tune  # noqa: E402

from trainables.trainable import EPOCH_METRICS, TEST_METRICS, resolve_config  # noqa: E402

TRACKING_ENV = "MLFLOW_TRACKING_URI"
DEFAULT_TRACKING_URI = "http://127.0.0.1:5000"


class TrackingError(RuntimeError):
    """The tracking server cannot be used; raised before any trial starts."""


def resolve_tracking_uri(flag: str | None) -> str:
    return flag or os.environ.get(TRACKING_ENV) or DEFAULT_TRACKING_URI


def check_tracking_server(uri: str, timeout: float = 5.0) -> None:
    """Make sure ``uri`` is a reachable MLflow server (HTTP) or a usable local store."""
    if not uri.startswith(("http://", "https://")):
        return  # sqlite:// or file store: MlflowClient creates it
    base = uri.rstrip("/")
    try:
        with urllib.request.urlopen(
            f"{base}/api/2.0/mlflow/experiments/search?max_results=1", timeout=timeout
        ) as resp:
            body = json.loads(resp.read() or b"{}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise TrackingError(
            f"MLflow tracking server {uri} is not reachable or is not an MLflow server "
            f"({exc}); start one (make up) or pass --tracking-uri / set ${TRACKING_ENV}"
        ) from None
    if not isinstance(body, dict):
        raise TrackingError(f"{uri} answered, but not as an MLflow tracking server")


def start_parent_run(
    client: MlflowClient, experiment: str, run_name: str, tags: dict, params: dict
) -> tuple[str, str]:
    """Get or create the sweep's experiment and open its parent run; returns (exp_id, run_id)."""
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    run = client.create_run(exp_id, run_name=run_name, tags={k: str(v) for k, v in tags.items()})
    client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
    return exp_id, run.info.run_id


def trial_run_name(config: dict) -> str:
    """Grid trials by their cell (``resnet18-adam-lr0.001``); table-row trials by the
    row's label, which is unique where model/optimizer/lr are not (``VGG blocks + Dropout
    + augmentation``)."""
    if config.get("label"):
        return config["label"]
    return f"{config.get('model')}-{config.get('optimizer')}-lr{config.get('lr', 0):.3g}"


class MlflowTrialLogger(tune.Callback):
    """Opens a child run when a trial starts, logs every epoch with step=epoch, closes it."""

    def __init__(
        self,
        tracking_uri: str,
        experiment_id: str,
        parent_run_id: str,
        tags: dict,
        cells: dict[str, dict] | None = None,
    ):
        self.cells = cells  # table-row sweeps: Tune's config holds the row label only
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.tags = {k: str(v) for k, v in tags.items()}
        self.run_ids: dict[str, str] = {}  # trial_id -> MLflow run id
        self.trial_paths: dict[str, str] = {}  # trial_id -> Tune trial folder
        self.pending: list[tuple[str, tuple]] = []  # calls to retry after a failure
        self._client: MlflowClient | None = None

    # The client is made lazily: Tune may pickle callbacks with the experiment state.
    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(self.tracking_uri)
        return self._client

    def __getstate__(self):
        return {**self.__dict__, "_client": None}

    def _call(self, method: str, *args) -> object | None:
        self._retry_pending()
        try:
            return getattr(self.client, method)(*args)
        except Exception as exc:  # network errors come in many types
            print(f"[mlflow] {method} failed ({type(exc).__name__}: {exc}); will retry")
            self.pending.append((method, args))
            return None

    def _retry_pending(self) -> None:
        still = []
        for method, args in self.pending:
            try:
                getattr(self.client, method)(*args)
            except Exception:
                still.append((method, args))
        self.pending = still

    def flush(self) -> int:
        """Retry what failed; returns how many calls are still not logged."""
        self._retry_pending()
        return len(self.pending)

    def run_for(self, trial) -> str:
        tid = trial.trial_id
        self.trial_paths[tid] = trial.path
        if tid not in self.run_ids:
            config = resolve_config(trial.config, self.cells)
            tags = {**self.tags, MLFLOW_PARENT_RUN_ID: self.parent_run_id, "trial_id": tid}
            if config.get("label"):
                tags["table_row"] = config["label"]
            run = self.client.create_run(
                self.experiment_id, run_name=trial_run_name(config), tags=tags
            )
            self.run_ids[tid] = run.info.run_id
            self._call(
                "log_batch",
                run.info.run_id,
                [],
                [Param(k, str(v)[:6000]) for k, v in sorted(config.items())],
                [],
            )
        return self.run_ids[tid]

    def on_trial_start(self, iteration, trials, trial, **info):
        self.run_for(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        run_id = self.run_for(trial)
        step = int(result.get("epoch", result.get("training_iteration", 0)))
        now = int(time.time() * 1000)
        keys = [k for k in (*EPOCH_METRICS, *TEST_METRICS) if k != "epoch" and k in result]
        metrics = [Metric(k, float(result[k]), now, step) for k in keys]
        self._call("log_batch", run_id, metrics, [], [])

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._call("set_terminated", self.run_for(trial), "FINISHED")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._call("set_terminated", self.run_for(trial), "FAILED")

    def log_final(
        self, run_id: str, metrics: dict, step: int, tags: dict, artifacts: list[Path]
    ) -> None:
        """After the sweep: test metrics computed for early-stopped trials, tags, figures."""
        now = int(time.time() * 1000)
        self._call(
            "log_batch",
            run_id,
            [Metric(k, float(v), now, step) for k, v in metrics.items()],
            [],
            [RunTag(k, str(v)) for k, v in tags.items()],
        )
        for path in artifacts:
            self._call("log_artifact", run_id, str(path))
