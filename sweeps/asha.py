"""ASHA that survives a driver restart, and the table of its decisions.

Tune's experiment checkpoint restores trials, the searcher (Optuna) and callbacks, but
not the scheduler: a restored ``ASHAScheduler`` starts with empty rungs and would judge
the remaining trials against nothing. :class:`ResumableASHA` writes its rungs to
``asha_state.json`` (in the run's state folder, ``Plan.state_dir``) after every decision
and reads them back when a restored experiment first uses it. It also keeps every
decision it made (trial, rung, value, the cutoff it was judged against, continue/stop),
which :func:`decisions_table` turns into ``asha_decisions.parquet`` for the report.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
from ray.tune.schedulers import ASHAScheduler

from sweeps.results import write_text

STATE_FILE = "asha_state.json"


def _write_json(path: Path, obj) -> None:
    write_text(json.dumps(obj, indent=1, default=str), path)


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
        _write_json(
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


DECISION_COLUMNS = ["trial_id", "rung", "val_acc", "cutoff", "records", "decision", "time_utc"]


def decisions_table(scheduler: ResumableASHA, trials: pd.DataFrame) -> pd.DataFrame:
    """ASHA's rung judgements, one row each, with the trial's config beside them so a
    reader can see which lr or model was cut where (``cutoff`` NaN: an empty rung)."""
    d = pd.DataFrame(scheduler.decisions(), columns=DECISION_COLUMNS)
    d["cutoff"] = pd.to_numeric(d["cutoff"], errors="coerce").astype("float64")
    d = d.astype({"rung": "int64", "val_acc": "float64", "records": "int64"})
    keys = [c for c in ("trial_id", "label", "model", "optimizer", "lr") if c in trials]
    return d.merge(trials[keys], on="trial_id", how="left")[[*keys, *DECISION_COLUMNS[1:]]]
