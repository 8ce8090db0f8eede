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
import shutil
import tempfile
import time
from pathlib import Path

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from ray import tune

from sweeps.tracking_uri import public_uri
from sweeps.trials import run_name, stop_reason
from trainables.schema import EPOCH_METRICS, TEST_METRICS
from trainables.trainable import resolve_config


def start_parent_run(
    client: MlflowClient, experiment: str, run_name: str, tags: dict, params: dict
) -> tuple[str, str]:
    """Get or create the sweep's experiment and open its parent run; returns (exp_id, run_id)."""
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    run = client.create_run(exp_id, run_name=run_name, tags={k: str(v) for k, v in tags.items()})
    client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
    return exp_id, run.info.run_id


class MlflowTrialLogger(tune.Callback):
    """Opens a child run when a trial starts, logs every epoch with step=epoch, closes it.

    Every MLflow call goes through one ordered queue. When the server is unreachable the
    queue keeps the calls (in order, so a run is created before its metrics are logged)
    and retries them every ``retry_every_s`` seconds from Tune's event loop; training
    never waits for MLflow and a sweep never crashes because of it. The queue, the run
    ids and the last epoch logged per trial are part of Tune's experiment checkpoint
    (``get_state``), so a driver killed while MLflow was down loses nothing either.

    Each epoch is logged once: a trial restarted from an older checkpoint (a killed
    worker, a lost node, a resumed driver) reports epochs MLflow already has; those are
    skipped, so a metric history has exactly one value per step.
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment_id: str,
        parent_run_id: str,
        tags: dict,
        cells: dict[str, dict] | None = None,
        retry_every_s: float = 10.0,
        seed_in_name: bool = False,
    ):
        self.cells = cells  # table-row sweeps: Tune's config holds the row label only
        self.seed_in_name = seed_in_name  # cells repeated over seeds: name each seed
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.tags = {k: str(v) for k, v in tags.items()}
        self.retry_every_s = retry_every_s
        self.run_ids: dict[str, str] = {}  # trial_id -> MLflow run id
        self.logged_epoch: dict[str, int] = {}  # trial_id -> last epoch MLflow has
        self.trial_paths: dict[str, str] = {}  # trial_id -> Tune trial folder
        self.queue: list[dict] = []  # MLflow calls not yet done, oldest first
        self.created: set[str] = set()  # trials whose "create" call is queued or done
        # trials whose logged_epoch came from a restored experiment checkpoint (see set_state)
        self.unsynced: set[str] = set()
        self._next_try = 0.0
        self._down_since: float | None = None
        self._stage: str | None = None  # copies of artifacts waiting to be logged
        self._client: MlflowClient | None = None

    # The client is made lazily: Tune pickles callbacks with the experiment state.
    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(self.tracking_uri)
        return self._client

    def __getstate__(self):
        return {**self.__dict__, "_client": None}

    # Tune's experiment checkpoint: what a restarted driver needs to carry on logging.
    def get_state(self) -> dict:
        return {
            "run_ids": self.run_ids,
            "logged_epoch": self.logged_epoch,
            "trial_paths": self.trial_paths,
            "queue": self.queue,
            "created": sorted(self.created),
        }

    def set_state(self, state: dict) -> None:
        # Tune writes its experiment checkpoint every few seconds, not after every call,
        # so a killed driver's checkpoint may be older than MLflow: an epoch logged after
        # it is missing from logged_epoch, and a trial restored from a checkpoint before
        # that epoch (one paused at an ASHA rung, say) would log it a second time. Each
        # restored run's last epoch is read back from the server before its next log.
        self.unsynced |= set(state.get("run_ids", {}))
        self.run_ids |= state.get("run_ids", {})
        self.logged_epoch |= state.get("logged_epoch", {})
        self.trial_paths |= state.get("trial_paths", {})
        self.queue = state.get("queue", []) + self.queue
        self.created |= set(state.get("created", ()))

    # ------------------------------------------------------------------ the queue

    def submit(self, op: str, *, trial: str | None = None, run: str | None = None, **kw):
        """Queue one call for a trial's run (resolved when it runs) or a known run id."""
        call = {"op": op, "trial": trial, "run": run, **kw}
        self.queue.append(call)
        self.drain()
        if op == "artifact" and any(c is call for c in self.queue):
            # not logged yet, and callers pass files from temporary folders: keep a copy
            if self._stage is None:
                self._stage = tempfile.mkdtemp(prefix="cnnsweep-mlflow-")
            target = Path(self._stage) / str(len(os.listdir(self._stage))) / Path(kw["path"]).name
            target.parent.mkdir()
            shutil.copyfile(kw["path"], target)
            call["path"] = str(target)

    def drain(self, force: bool = False) -> int:
        """Run queued calls in order until one fails; returns how many are left."""
        if not self.queue or (not force and time.monotonic() < self._next_try):
            return len(self.queue)
        done = 0
        while self.queue:
            try:
                self._do(self.queue[0])
            except Exception as exc:  # network errors come in many types
                self._next_try = time.monotonic() + self.retry_every_s
                if self._down_since is None:
                    self._down_since = time.time()
                    print(
                        f"[mlflow] {self.queue[0]['op']} failed ({type(exc).__name__}: "
                        f"{str(exc)[:200]}); {len(self.queue)} call(s) queued, retrying "
                        f"every {self.retry_every_s:g} s; training goes on",
                        flush=True,
                    )
                break
            self.queue.pop(0)
            done += 1
        if not self.queue and self._down_since is not None:
            print(
                f"[mlflow] server back after {time.time() - self._down_since:.0f} s; "
                f"{done} queued call(s) logged",
                flush=True,
            )
            self._down_since = None
        return len(self.queue)

    def _run_id(self, call: dict) -> str:
        return call["run"] or self.run_ids[call["trial"]]

    def _do(self, call: dict) -> None:
        op = call["op"]
        if op == "create":
            self._create(call)
        elif op == "log":
            step, trial = call.get("step"), call["trial"]
            if step is not None and trial in self.unsynced:
                self._sync(trial)
            if step is not None and trial and step <= self.logged_epoch.get(trial, 0):
                return  # this epoch is in MLflow already (a restarted trial re-reported it)
            self.client.log_batch(
                self._run_id(call),
                metrics=[Metric(k, float(v), ts, s) for k, v, ts, s in call.get("metrics", [])],
                params=[Param(k, v) for k, v in call.get("params", [])],
                tags=[RunTag(k, v) for k, v in call.get("tags", [])],
            )
            if step is not None and trial:
                self.logged_epoch[trial] = step
        elif op == "terminate":
            self.client.set_terminated(self._run_id(call), call["status"])
        elif op == "status":
            self.client.update_run(self._run_id(call), status=call["status"])
        elif op == "artifact":
            self.client.log_artifact(self._run_id(call), call["path"], call.get("artifact_path"))
        else:
            raise ValueError(f"unknown MLflow call {op!r}")

    def _create(self, call: dict) -> None:
        """Create a trial's child run, or adopt the one a previous driver created: runs
        are found by their ``trial_id`` tag under the parent, so a retried create (the
        server may have done it before the connection broke) or a resumed sweep never
        makes a second run for the same trial."""
        tid = call["trial"]
        found = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.trial_id = '{tid}' and "
            f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{self.parent_run_id}'",
            max_results=1,
        )
        if found:
            rid = found[0].info.run_id
            self.run_ids[tid] = rid
            self._sync(tid)
            if found[0].info.status != "RUNNING":
                self.client.update_run(rid, status="RUNNING")
        else:
            run = self.client.create_run(
                self.experiment_id, run_name=call["name"], tags=call["tags"]
            )
            rid = run.info.run_id
            self.client.log_batch(rid, params=[Param(k, v) for k, v in call["params"]])
        self.run_ids[tid] = rid

    def _sync(self, trial: str) -> None:
        """Set a trial's last logged epoch from its run's history on the server."""
        history = self.client.get_metric_history(self.run_ids[trial], "val_acc")
        self.logged_epoch[trial] = max([m.step for m in history], default=0)
        self.unsynced.discard(trial)

    def flush(self, wait_s: float = 0.0) -> int:
        """Retry what is queued for up to ``wait_s`` seconds; returns how many calls are
        still not logged."""
        deadline = time.monotonic() + wait_s
        while self.drain(force=True) and time.monotonic() < deadline:
            time.sleep(min(self.retry_every_s, max(0.0, deadline - time.monotonic())))
        return len(self.queue)

    def close(self) -> None:
        """Remove the staged artifact copies (call after :meth:`spool`)."""
        if self._stage:
            shutil.rmtree(self._stage, ignore_errors=True)
            self._stage = None

    def spool(self, folder: Path) -> Path | None:
        """Write what could not be logged (artifacts copied) to ``folder`` so that
        ``python -m sweeps.tracking replay <file>`` can log it when the server is back."""
        if not self.queue:
            return None
        folder.mkdir(parents=True, exist_ok=True)
        calls = []
        for i, call in enumerate(self.queue):
            call = dict(call)
            if call["trial"] in self.run_ids:
                call["run"], call["trial"] = self.run_ids[call["trial"]], None
            if call["op"] == "artifact" and Path(call["path"]).exists():
                target = folder / f"{i:05d}" / Path(call["path"]).name
                target.parent.mkdir(exist_ok=True)
                shutil.copyfile(call["path"], target)
                call["path"] = str(target)
            calls.append(call)
        path = folder / "pending.json"
        state = {
            "tracking_uri": public_uri(self.tracking_uri),
            "experiment_id": self.experiment_id,
            "parent_run_id": self.parent_run_id,
            "calls": calls,
        }
        path.write_text(json.dumps(state, indent=1))
        return path

    # ---------------------------------------------------------------- Tune hooks

    def run_for(self, trial) -> None:
        tid = trial.trial_id
        self.trial_paths[tid] = trial.path
        if tid in self.created:
            return
        config = resolve_config(trial.config, self.cells)
        tags = {**self.tags, MLFLOW_PARENT_RUN_ID: self.parent_run_id, "trial_id": tid}
        if config.get("label"):
            tags["table_row"] = config["label"]
        params = [[k, str(v)[:6000]] for k, v in sorted(config.items())]
        self.created.add(tid)
        self.submit(
            "create", trial=tid, name=run_name(config, self.seed_in_name), tags=tags, params=params
        )

    def on_trial_start(self, iteration, trials, trial, **info):
        self.run_for(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.run_for(trial)
        step = int(result.get("epoch", result.get("training_iteration", 0)))
        now = int(time.time() * 1000)
        keys = [k for k in (*EPOCH_METRICS, *TEST_METRICS) if k != "epoch" and k in result]
        metrics = [[k, float(result[k]), now, step] for k in keys]
        self.submit("log", trial=trial.trial_id, metrics=metrics, step=step)

    def on_step_end(self, iteration, trials, **info):
        self.drain()  # a quiet event loop still retries the backlog

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.run_for(trial)
        self.tag_stop_reason(trial, "TERMINATED")
        self.submit("terminate", trial=trial.trial_id, status="FINISHED")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.run_for(trial)
        self.tag_stop_reason(trial, "ERROR")
        self.submit("terminate", trial=trial.trial_id, status="FAILED")

    def tag_stop_reason(self, trial, status: str) -> None:
        """The ``stop_reason`` tag as the trial ends, so the runs table tells a trial ASHA
        stopped from one that finished while the sweep still runs."""
        last = trial.last_result or {}
        max_t = int(resolve_config(trial.config, self.cells).get("epochs", 0))
        why = stop_reason(status, int(last.get("epoch", 0)), max_t, last.get("stopped_by_rule"))
        self.submit("log", trial=trial.trial_id, tags=[["stop_reason", why]])

    def log_final(
        self,
        run_id: str,
        metrics: dict,
        step: int,
        tags: dict,
        artifacts: list[Path],
        summary: dict | None = None,
    ) -> None:
        """After the sweep: test metrics computed for early-stopped trials, tags, figures,
        and the ``summary`` metrics at ``step + 1`` (latest, so the runs table shows them)."""
        now = int(time.time() * 1000)
        self.submit(
            "log",
            run=run_id,
            metrics=[[k, float(v), now, step] for k, v in metrics.items()]
            + [[k, float(v), now + 1, step + 1] for k, v in (summary or {}).items()],
            tags=[[k, str(v)] for k, v in tags.items()],
        )
        for path in artifacts:
            self.submit("artifact", run=run_id, path=str(path))


def replay(path: Path, tracking_uri: str | None = None) -> int:
    """Log calls spooled by :meth:`MlflowTrialLogger.spool`; returns how many are left."""
    state = json.loads(Path(path).read_text())
    logger = MlflowTrialLogger(
        tracking_uri or state["tracking_uri"],
        state["experiment_id"],
        state["parent_run_id"],
        {},
        retry_every_s=0,
    )
    logger.queue = state["calls"]
    left = logger.drain(force=True)
    state["calls"] = logger.queue
    Path(path).write_text(json.dumps(state, indent=1))
    return left


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(description="log MLflow calls a sweep could not log")
    p.add_argument("command", choices=["replay"])
    p.add_argument("pending", type=Path, help="the pending.json a sweep printed")
    p.add_argument("--tracking-uri", help="default: the URI the sweep used")
    a = p.parse_args()
    left = replay(a.pending, a.tracking_uri)
    print(f"{left} call(s) still not logged" if left else "all calls logged")
    raise SystemExit(1 if left else 0)
