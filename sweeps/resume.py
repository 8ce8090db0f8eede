"""Surviving a killed driver: the sweep's own state beside Tune's, and ASHA that resumes.

Tune's experiment checkpoint restores trials, the searcher (Optuna) and callbacks, but
not the scheduler: a restored ``ASHAScheduler`` starts with empty rungs and would judge
the remaining trials against nothing (a known Tune weakness). :class:`ResumableASHA`
writes its rungs to ``asha_state.json`` (in the run's state folder, ``Plan.state_dir``)
after every decision
and reads them back when a restored experiment first uses it.

``cnnsweep.json`` beside it records the MLflow parent run and what the sweep
was asked to do, so ``--resume`` continues the same parent run with the same children,
and refuses flags that would make it a different sweep.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from ray.tune.schedulers import ASHAScheduler

SIDECAR = "cnnsweep.json"
ASHA_STATE = "asha_state.json"


def write_json(path: Path, obj) -> None:
    """Write JSON atomically (a kill mid-write leaves the previous file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1, default=str)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


class ResumableASHA(ASHAScheduler):
    """ASHA whose rung records and stop count survive a driver restart (see module doc)."""

    def __init__(self, state_path: str | Path, **kw):
        super().__init__(**kw)
        self.state_path = str(state_path)
        self._loaded = False

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

    def _save(self) -> None:
        index = {id(b): i for i, b in enumerate(self._brackets)}
        write_json(
            Path(self.state_path),
            {
                "brackets": [[[m, r] for m, r in b._rungs] for b in self._brackets],
                "num_stopped": self._num_stopped,
                "trial_info": {t: index[id(b)] for t, b in self._trial_info.items()},
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

    def on_trial_result(self, tune_controller, trial, result):
        self._load()
        action = super().on_trial_result(tune_controller, trial, result)
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
