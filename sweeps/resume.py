"""Surviving a killed driver: the sweep's own state beside Tune's, and ASHA that resumes.

Tune's experiment checkpoint restores trials, the searcher (Optuna) and callbacks, but
not the scheduler: a restored ``ASHAScheduler`` starts with empty rungs and would judge
the remaining trials against nothing (a known Tune weakness). :class:`ResumableASHA`
writes its rungs to ``asha_state.json`` (in the run's state folder, ``Plan.state_dir``)
after every decision
and reads them back when a restored experiment first uses it. It also keeps every
decision it made (trial, rung, value, the cutoff it was judged against, continue/stop),
which the sweep writes to ``asha_decisions.parquet`` and the report draws.

``cnnsweep.json`` beside it records the MLflow parent run and what the sweep
was asked to do, so ``--resume`` continues the same parent run with the same children,
and refuses flags that would make it a different sweep.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from ray.tune.schedulers import ASHAScheduler

from sweeps.results import write_text

SIDECAR = "cnnsweep.json"
ASHA_STATE = "asha_state.json"


def write_json(path: Path, obj) -> None:
    """Write JSON atomically (a kill mid-write leaves the previous file)."""
    write_text(json.dumps(obj, indent=1, default=str), Path(path))


def mark_status(state_dir: Path, status: str) -> None:
    """Record in the sidecar how the run is (``cnnsweep runs`` shows it): ``running``
    (with the driver's host and pid, see :func:`driver_alive`), ``finished``, ``failed``
    (trials errored) or ``died`` (found with a dead driver, see :func:`close_dead_runs`)."""
    path = Path(state_dir) / SIDECAR
    if path.exists():
        meta = json.loads(path.read_text())
        meta["status"] = status
        meta["status_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if status == "running":
            meta["driver"] = driver_record()
        write_json(path, meta)


def _started(pid: int) -> float | None:
    """When process ``pid`` started (epoch seconds), or None if there is none."""
    try:
        import psutil  # Ray's own dependency

        return round(psutil.Process(pid).create_time(), 2)
    except Exception:
        return None


def driver_record() -> dict:
    """Who runs the sweep: host, pid and the pid's start time (a reused pid has another)."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "pid_started": _started(pid)}


def driver_alive(meta: dict) -> bool | None:
    """Whether a ``running`` run's driver still runs: True or False on the host it ran on,
    None elsewhere (another machine's processes cannot be seen from here)."""
    driver = meta.get("driver")
    if not driver or driver.get("host") != socket.gethostname():
        return None
    started = _started(int(driver["pid"]))
    if started is None:
        return False
    return driver.get("pid_started") is None or abs(started - driver["pid_started"]) < 1.0


def close_dead_runs(client, storage: Path, sweep: str, skip: Path | None = None) -> list[str]:
    """Mark the runs of ``sweep`` whose driver died (SIGKILL, OOM, a reboot: nothing
    could close them) as such: the sidecar says ``died`` and the MLflow parent and its
    RUNNING children become KILLED, with a tag that says how to continue. Without this they
    stay RUNNING in the MLflow UI forever. ``--resume`` sets them RUNNING again. Only
    drivers of this host are judged; ``skip`` is the run being started or resumed.
    Returns the names of the runs closed."""
    from sweeps.runner import STATE_FOLDER

    closed = []
    for side in sorted((Path(storage) / STATE_FOLDER).glob(f"*/{SIDECAR}")):
        if skip is not None and side.parent.resolve() == Path(skip).resolve():
            continue
        try:
            meta = json.loads(side.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if meta.get("sweep") != sweep or meta.get("status") != "running":
            continue
        if driver_alive(meta) is not False:
            continue
        name = side.parent.name
        hint = f"its driver died; continue it with: cnnsweep resume {sweep} --name {name} ..."
        parent = meta.get("mlflow", {}).get("parent_run_id")
        if parent:
            exp = meta["mlflow"]["experiment_id"]
            children = client.search_runs(
                [exp], f"tags.`mlflow.parentRunId` = '{parent}' and attributes.status = 'RUNNING'"
            )
            for run in children:
                client.set_terminated(run.info.run_id, "KILLED")
            client.set_tag(parent, "cnnsweep.status", hint)
            if client.get_run(parent).info.status == "RUNNING":
                client.set_terminated(parent, "KILLED")
        mark_status(side.parent, "died")
        print(f"[mlflow] run {name} of {sweep}: {hint}", flush=True)
        closed.append(name)
    return closed


class ResumableASHA(ASHAScheduler):
    """ASHA whose rung records and stop count survive a driver restart (see module doc)."""

    def __init__(self, state_path: str | Path, **kw):
        super().__init__(**kw)
        self.state_path = str(state_path)
        self._loaded = False
        self._decisions: list[dict] = []

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        path = Path(self.state_path)
        if not path.exists():
            return
        state = json.loads(path.read_text())
        for bracket, rungs in zip(self._brackets, state["brackets"], strict=True):
            bracket._rungs = [(milestone, dict(recorded)) for milestone, recorded in rungs]
        self._num_stopped = state["num_stopped"]
        self._trial_info |= {t: self._brackets[i] for t, i in state["trial_info"].items()}
        self._decisions = state.get("decisions", [])

    def _save(self) -> None:
        index = {id(b): i for i, b in enumerate(self._brackets)}
        write_json(
            Path(self.state_path),
            {
                "brackets": [[[m, r] for m, r in b._rungs] for b in self._brackets],
                "num_stopped": self._num_stopped,
                "trial_info": {t: index[id(b)] for t, b in self._trial_info.items()},
                "decisions": self._decisions,
            },
        )

    def rungs(self) -> list[dict]:
        """Rung records as ``[{"milestone": m, "recorded": {trial_id: val_acc}}]``."""
        self._load()
        return [{"milestone": m, "recorded": dict(r)} for b in self._brackets for m, r in b._rungs]

    def on_trial_add(self, tune_controller, trial):
        self._load()
        if trial.trial_id not in self._trial_info:
            super().on_trial_add(tune_controller, trial)

    def decisions(self) -> list[dict]:
        """Every rung judgement so far: ``trial_id``, ``rung`` (the epoch), the trial's
        value there, the ``cutoff`` it had to reach (None: the rung held no records yet,
        so ASHA could not judge and let it continue), ``records`` behind that cutoff and
        ``decision`` ('continue' or 'stop')."""
        self._load()
        return list(self._decisions)

    def _pending_rung(self, trial, result) -> tuple[int, float | None, int] | None:
        """The rung this result will be judged at, the cutoff and how many records it
        rests on, read before Tune's ASHA records the result (the same search as
        ``_Bracket.on_result``)."""
        if self._time_attr not in result or self._metric not in result:
            return None
        if result[self._time_attr] >= self._max_t:
            return None  # the last epoch: the trial ends, nothing is judged
        bracket = self._trial_info.get(trial.trial_id)
        if bracket is None:
            return None
        for milestone, recorded in bracket._rungs:
            if result[self._time_attr] < milestone or trial.trial_id in recorded:
                continue
            cutoff = bracket.cutoff(recorded)
            cut = None if cutoff is None else float(self._metric_op * cutoff)
            return int(milestone), cut, len(recorded)
        return None

    def on_trial_result(self, tune_controller, trial, result):
        self._load()
        pending = self._pending_rung(trial, result)
        action = super().on_trial_result(tune_controller, trial, result)
        if pending is not None:
            rung, cutoff, records = pending
            self._decisions.append(
                {
                    "trial_id": trial.trial_id,
                    "rung": rung,
                    self._metric: float(result[self._metric]),
                    "cutoff": cutoff,
                    "records": records,
                    "decision": "stop" if action == self.STOP else "continue",
                    "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                }
            )
        self._save()
        return action

    def on_trial_complete(self, tune_controller, trial, result):
        self._load()
        if trial.trial_id in self._trial_info:
            super().on_trial_complete(tune_controller, trial, result)
        self._save()

    def on_trial_remove(self, tune_controller, trial):
        self._load()
        self._trial_info.pop(trial.trial_id, None)
        self._save()


def fingerprint(plan) -> dict:
    """What makes two invocations the same sweep (the run name and paths aside)."""
    return json.loads(
        json.dumps(
            {
                "sweep": plan.sweep.name,
                "budget": plan.budget.name,
                "search": plan.search,
                "models": plan.models,
                "optimizers": plan.optimizers,
                "lrs": plan.lrs,
                "base_config": plan.base_config,
                "cells": plan.cells,
                "num_samples": plan.num_samples,
                "asha": plan.asha,
                "grace_period": plan.grace_period,
                "reduction_factor": plan.reduction_factor,
                "datasets": plan.datasets,
            },
            default=str,
        )
    )


def find_experiment(storage: Path, sweep: str, name: str | None) -> Path:
    """The state folder of the run ``--resume`` continues: ``--name``'s, else the newest
    run of this sweep under the storage path."""
    from sweeps.runner import STATE_FOLDER
    from trainables.config import ConfigError

    def resumable(state: Path) -> bool:
        return (state / SIDECAR).exists() and (storage / state.name / "tuner.pkl").exists()

    if name:
        state = storage / STATE_FOLDER / name
        if not resumable(state):
            raise ConfigError(
                f"--resume --name {name!r}: {storage / name} holds no sweep to resume; "
                f"allowed: a --name of an earlier run under {storage} (or no --name: the newest)"
            )
        return state
    mine = [
        f.parent
        for f in (storage / STATE_FOLDER).glob(f"*/{SIDECAR}")
        if json.loads(f.read_text()).get("sweep") == sweep and resumable(f.parent)
    ]
    if not mine:
        raise ConfigError(
            f"--resume: no {sweep} sweep to resume under {storage}; allowed: a storage path "
            "(--storage-path / $CNNSWEEP_STORAGE_PATH) where an earlier run of it was started"
        )
    return max(mine, key=lambda f: (f / SIDECAR).stat().st_mtime)


def check_same_sweep(folder: Path, plan) -> dict:
    """The sidecar of ``folder``, after checking the flags describe the same sweep."""
    from trainables.config import ConfigError

    saved = json.loads((folder / SIDECAR).read_text())
    now = fingerprint(plan)
    diff = [k for k in now if saved["plan"].get(k) != now[k]]
    if diff:
        k = diff[0]
        raise ConfigError(
            f"--resume: {k} is {now[k]!r} but the run being resumed ({folder.name}) used "
            f"{saved['plan'].get(k)!r}; allowed: the flags of the original command"
        )
    return saved
