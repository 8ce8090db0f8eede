"""ASHA that survives a driver restart, and the table of its decisions.

Tune's experiment checkpoint restores trials, the searcher (Optuna) and callbacks, but
not the scheduler: a restored ``ASHAScheduler`` starts with empty rungs and would judge
the remaining trials against nothing. :class:`ResumableASHA` writes its rungs to
``asha_state.json`` (in the run's state folder, ``Plan.state_dir``) after every decision
and reads them back when a restored experiment first uses it. It also keeps every
decision it made (trial, rung, value, the cutoff it was judged against, continue/stop),
which :func:`decisions_table` turns into ``asha_decisions.parquet`` for the report.

Two rules on top of Tune's ASHA:

- **A published cell is never stopped.** ``protected`` holds the cells a paper reports
  (:func:`cell_key`); such a trial trains as the paper trained it. Its results still
  enter the rungs (they are real measurements the other trials are judged against); a
  stop ASHA would have made is logged as ``kept (published)``.
- **Trials are ranked only within their group** (``groups``: a table row's label -> its
  dataset): one bracket per group, so a CIFAR-10 row is never judged against MNIST rows.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
from ray.tune.schedulers import ASHAScheduler

from sweeps.results import write_text
from sweeps.sweep import cell_key

STATE_FILE = "asha_state.json"
KEPT = "kept (published)"  # the decision logged where ASHA would have stopped a published cell


def _write_json(path: Path, obj) -> None:
    write_text(json.dumps(obj, indent=1, default=str), path)


def _config(trial) -> dict:
    return getattr(trial, "config", None) or {}


class ResumableASHA(ASHAScheduler):
    """ASHA whose rung records and stop count survive a driver restart (see module doc)."""

    def __init__(
        self,
        state_path: str | Path,
        protected: frozenset[str] = frozenset(),
        groups: dict[str, str] | None = None,
        **kw,
    ):
        super().__init__(**kw)
        if len(self._brackets) != 1:
            raise ValueError("ResumableASHA keeps one bracket per group (brackets=1)")
        self.state_path = str(state_path)
        self.protected = frozenset(protected)
        self.groups = dict(groups or {})
        self._bracket_args = kw
        # group -> its bracket; "" (every trial of a sweep without groups) is Tune's own
        self._group_brackets = {"": self._brackets[0]}
        self._loaded = False
        self._decisions: list[dict] = []

    def _bracket_of(self, group: str):
        if group not in self._group_brackets:
            self._group_brackets[group] = ASHAScheduler(**self._bracket_args)._brackets[0]
        return self._group_brackets[group]

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        path = Path(self.state_path)
        if not path.exists():
            return
        state = json.loads(path.read_text())
        for group, rungs in state["groups"].items():
            bracket = self._bracket_of(group)
            bracket._rungs = [(milestone, dict(recorded)) for milestone, recorded in rungs]
        self._num_stopped = state["num_stopped"]
        self._trial_info |= {t: self._bracket_of(g) for t, g in state["trial_info"].items()}
        self._decisions = state.get("decisions", [])

    def _save(self) -> None:
        group = {id(b): g for g, b in self._group_brackets.items()}
        _write_json(
            Path(self.state_path),
            {
                "groups": {
                    g: [[m, r] for m, r in b._rungs] for g, b in self._group_brackets.items()
                },
                "num_stopped": self._num_stopped,
                "trial_info": {t: group[id(b)] for t, b in self._trial_info.items()},
                "decisions": self._decisions,
            },
        )

    def rungs(self) -> list[dict]:
        """Rung records as ``[{"group": g, "milestone": m, "recorded": {trial_id: val_acc}}]``."""
        self._load()
        return [
            {"group": g, "milestone": m, "recorded": dict(r)}
            for g, b in self._group_brackets.items()
            for m, r in b._rungs
        ]

    def on_trial_add(self, tune_controller, trial):
        self._load()
        if trial.trial_id not in self._trial_info:
            super().on_trial_add(tune_controller, trial)  # checks metric and mode
            group = self.groups.get(cell_key(_config(trial)), "")
            self._trial_info[trial.trial_id] = self._bracket_of(group)

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
        decision = "stop" if action == self.STOP else "continue"
        if (
            pending is not None
            and action == self.STOP
            and cell_key(_config(trial)) in self.protected
        ):
            action, decision = self.CONTINUE, KEPT
            self._num_stopped -= 1
        if pending is not None:
            rung, cutoff, records = pending
            self._decisions.append(
                {
                    "trial_id": trial.trial_id,
                    "rung": rung,
                    self._metric: float(result[self._metric]),
                    "cutoff": cutoff,
                    "records": records,
                    "decision": decision,
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
