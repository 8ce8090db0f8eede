"""ASHA that survives a driver restart, the order grid trials meet it, and the table of
its decisions.

Tune's experiment checkpoint restores trials, the searcher (Optuna) and callbacks, but
not the scheduler: a restored ``ASHAScheduler`` starts with empty rungs and would judge
the remaining trials against nothing. :class:`ResumableASHA` writes its rungs to
``asha_state.json`` (in the run's state folder, ``Plan.state_dir``) after every decision
and reads them back when a restored experiment first uses it; a trial it stopped after
Tune's last experiment checkpoint is stopped again at the same epoch. It also keeps every
decision it made (trial, rung, value, the cutoff it was judged against, continue/stop),
which :func:`decisions_table` turns into ``asha_decisions.parquet`` for the report.

Three rules on top of Tune's ASHA:

- **A published cell is never stopped.** ``protected`` holds the cells a paper reports
  (:func:`cell_key`); such a trial trains as the paper trained it. Its results still
  enter the rungs (they are real measurements the other trials are judged against); a
  stop ASHA would have made is logged as ``kept (published)``.
- **Trials are ranked only within their group** (``groups``: a table row's label -> its
  dataset): one bracket per group, so a CIFAR-10 row is never judged against MNIST rows.
- **A rung judges only once it holds a quorum of records** (``quorum``, the sweep's
  ``--asha-quorum``): a trial reaching a rung with fewer waits, paused, and is then
  judged by the bracket's own cutoff against the rung's other records (see the section
  below), instead of going on past an empty rung whatever it scored.

A grid sweep under ASHA starts its cells in :func:`trial_order`'s order (cheap models
first, models and optimizers interleaved, each optimizer's usual lr first) rather than
Tune's, so the first records of a rung are not all one corner of the grid.
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path

import pandas as pd
from ray.tune.schedulers import ASHAScheduler

from sweeps.plan import Plan
from sweeps.results import write_text
from sweeps.sweep import cell_key
from trainables.models import forward_flops, get_spec

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
        quorum: int = 0,
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
        self.quorum = quorum
        self._loaded = False
        self._decisions: list[dict] = []
        # trials it judged 'stop' -> the epoch it judged (see choose_trial_to_run)
        self._stopped: dict[str, int] = {}
        # trials paused at a rung until it holds `quorum` records: id -> [group, rung, value]
        self._waiting: dict[str, list] = {}
        self._resume: set[str] = set()  # judged 'continue' while paused: to run again

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
        self._stopped = {
            d["trial_id"]: d["rung"] for d in self._decisions if d["decision"] == "stop"
        }
        self._waiting = state.get("waiting", {})
        self._resume = set(state.get("resume", []))

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
                "waiting": self._waiting,
                "resume": sorted(self._resume),
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

    def _record(self, decision: dict) -> None:
        self._decisions.append(decision)
        if decision["decision"] == "stop":
            self._stopped[decision["trial_id"]] = decision["rung"]

    def on_trial_result(self, tune_controller, trial, result):
        self._load()
        if trial.trial_id in self._stopped:  # judged before a driver restart
            at = self._stopped[trial.trial_id]
            return self.STOP if result.get(self._time_attr, 0) >= at else self.CONTINUE
        self._resume.discard(trial.trial_id)
        self._waiting.pop(trial.trial_id, None)  # restored past its rung: judged below
        pending = self._pending_rung(trial, result)
        # a published cell goes on whatever the rung says: it never waits, only records
        waits = cell_key(_config(trial)) not in self.protected
        if pending is not None and self.quorum and tune_controller is not None and waits:
            return self._wait_or_judge(tune_controller, trial, result, pending[0])
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
            self._record(
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
        self._forget(trial)
        self._save()

    def on_trial_remove(self, tune_controller, trial):
        self._load()
        self._trial_info.pop(trial.trial_id, None)
        self._forget(trial)
        self._save()

    def on_trial_error(self, tune_controller, trial):
        self._load()
        super().on_trial_error(tune_controller, trial)
        self._forget(trial)
        self._save()

    def _forget(self, trial) -> None:
        self._waiting.pop(trial.trial_id, None)
        self._resume.discard(trial.trial_id)

    # ------------------------------------------------- a quorum before judging a rung
    # ASHA judges a trial against whatever its rung holds, so the first trials to reach
    # a rung meet it (nearly) empty and go on whatever they scored: on a small grid
    # that is most of the waste. With a quorum, a trial reaching a rung that holds fewer
    # than `quorum` records (its own included) is paused (Tune checkpoints it and frees
    # its slot for the next trial) until the rung has them, or until no other trial can
    # still reach it. Then every waiting trial is judged by the bracket's own rule
    # (stop below the (1 - 1/rf) percentile), against all the rung's other records, as
    # Tune judges a trial arriving last. Past the quorum this is Tune's ASHA unchanged. A
    # published cell (never stopped) does not wait: its record enters the rung at once.

    def _wait_or_judge(self, tune_controller, trial, result, rung: int) -> str:
        value = float(self._metric_op * result[self._metric])
        self._waiting[trial.trial_id] = [self._group(trial), rung, value]
        judged = self._settle(tune_controller, current=trial.trial_id)
        self._save()
        if trial.trial_id not in judged:
            return self.PAUSE
        return self.STOP if judged[trial.trial_id] == "stop" else self.CONTINUE

    def _group(self, trial) -> str:
        return self.groups.get(cell_key(_config(trial)), "")

    def _settle(self, tune_controller, current: str | None = None) -> dict[str, str]:
        """Judge the waiting trials whose rung has its quorum or can get no more records,
        lowest rung first; stop the paused ones judged 'stop', mark the others to run
        again. Returns {trial_id: 'continue' | 'stop'} of those judged."""
        trials = {t.trial_id: t for t in tune_controller.get_trials()}
        judged: dict[str, str] = {}
        for group, rung in sorted(
            {(g, r) for g, r, _ in self._waiting.values()}, key=lambda k: k[1]
        ):
            bracket = self._bracket_of(group)
            recorded = next(r for m, r in bracket._rungs if m == rung)
            batch = {t: v for t, (g, r, v) in self._waiting.items() if (g, r) == (group, rung)}
            if len(recorded) + len(batch) < self.quorum and self._may_reach(
                trials, group, rung, recorded, batch, judged
            ):
                continue
            recorded.update(batch)
            for tid, value in batch.items():
                cutoff = bracket.cutoff({k: v for k, v in recorded.items() if k != tid})
                decision = "stop" if cutoff is not None and value < cutoff else "continue"
                self._record(
                    {
                        "trial_id": tid,
                        "rung": int(rung),
                        self._metric: float(self._metric_op * value),
                        "cutoff": None if cutoff is None else float(self._metric_op * cutoff),
                        "records": len(recorded) - 1,
                        "decision": decision,
                        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    }
                )
                judged[tid] = decision
                del self._waiting[tid]
        for tid, decision in judged.items():
            if tid == current:
                continue
            if decision == "stop":
                self._num_stopped += 1
                tune_controller.stop_trial(trials[tid])
            else:
                self._resume.add(tid)
        if current in judged and judged[current] == "stop":
            self._num_stopped += 1
        return judged

    def _may_reach(self, trials, group, rung, recorded, batch, judged) -> bool:
        """Whether a trial of ``group`` not yet at ``rung`` may still report there."""
        for tid, t in trials.items():
            if tid in recorded or tid in batch or judged.get(tid) == "stop":
                continue
            if t.status not in ("PENDING", "RUNNING", "PAUSED") or self._group(t) != group:
                continue
            if (getattr(t, "last_result", None) or {}).get(self._time_attr, 0) < rung:
                return True
        return False

    def choose_trial_to_run(self, tune_controller):
        """A trial judged 'continue' after waiting first, then Tune's choice (pending
        trials, then paused ones), never a trial still waiting for its rung's quorum."""
        self._load()
        # Tune asks every controller step: write the state only when a judgement was made
        if self._waiting and self._settle(tune_controller):
            self._save()
        trials = tune_controller.get_trials()
        # asha_state.json is written at every decision, Tune's experiment checkpoint (and
        # with it the trials' result files) only every few seconds: a driver killed in
        # between is restored with a trial this scheduler stopped still to run, from a
        # checkpoint before the epoch it was judged at. It runs up to that epoch again
        # (Tune lost those results; the rung keeps the value) and is stopped there.
        for t in trials:
            at = self._stopped.get(t.trial_id)
            if at is None or t.status not in ("PENDING", "PAUSED"):
                continue
            if (getattr(t, "last_result", None) or {}).get(self._time_attr, 0) >= at:
                tune_controller.stop_trial(t)
        held = self._waiting.keys()
        for status, wanted in (("PAUSED", self._resume), ("PENDING", None), ("PAUSED", None)):
            for t in trials:
                if t.status != status or t.trial_id in held:
                    continue
                if wanted is None or t.trial_id in wanted:
                    return t
        return None


DECISION_COLUMNS = ["trial_id", "rung", "val_acc", "cutoff", "records", "decision", "time_utc"]


def decisions_table(scheduler: ResumableASHA, trials: pd.DataFrame) -> pd.DataFrame:
    """ASHA's rung judgements, one row each, with the trial's config beside them so a
    reader can see which lr or model was cut where (``cutoff`` NaN: an empty rung)."""
    d = pd.DataFrame(scheduler.decisions(), columns=DECISION_COLUMNS)
    d["cutoff"] = pd.to_numeric(d["cutoff"], errors="coerce").astype("float64")
    d = d.astype({"rung": "int64", "val_acc": "float64", "records": "int64"})
    keys = [c for c in ("trial_id", "label", "model", "optimizer", "lr") if c in trials]
    return d.merge(trials[keys], on="trial_id", how="left")[[*keys, *DECISION_COLUMNS[1:]]]


# The learning rate each optimizer is usually run at: the centre of a grid's lr axis for
# it. Adam's is its published default (Kingma & Ba); SGD's is Keras' default, the usual
# starting point (with momentum 0.9 at batch 32, torchvision's 0.1 at batch 256 scaled
# linearly gives about the same).
USUAL_LR = {"sgd": 1e-2, "adam": 1e-3}


def trial_order(
    cells: list[dict], cost: dict[str, float], seed: int, seeds: tuple[int, ...] = ()
) -> list[dict]:
    """The grid's cells (``model``, ``optimizer``, ``lr``; each once per seed of ``seeds``)
    in the order they start, chosen for ASHA.

    ASHA judges a trial at a rung against the records already there, so the first trials
    to reach a rung meet it (nearly) empty and go on whatever they scored. Tune's grid
    order puts one model's and one optimizer's cells side by side: in the MNIST ``cpu``
    run of 3 epochs the first two trials were VGG-16/SGD, at chance, and trained every
    epoch on both cores because nothing had reached their rungs yet. The rung quorum
    (:class:`ResumableASHA`) keeps any trial from being judged against an empty rung;
    the order decides which trials make up a rung's first records:

    - **Models and optimizers interleaved**: cells are drawn from the (model, optimizer)
      groups in turn, so a rung's first records span the grid instead of one corner.
    - **Cheap models first**, by stride scheduling on ``cost`` (a model's forward FLOPs):
      a group's next turn comes ``cost`` later, so a model 9x as costly as another starts
      one cell for the other's nine, and an expensive trial meets rungs the cheap ones
      already filled. A poor expensive trial is then stopped at its first rung.
    - **Each group's usual learning rate first** (:data:`USUAL_LR`), then the others by
      their distance from it in decades: the cells least likely to diverge or stall
      fill the first rungs, and the likely failures (Adam at 0.1) meet full ones.
    - **Seeds outermost**: every cell once before any cell's second seed.

    ``seed`` breaks ties (groups of one cost, lrs one decade either side) reproducibly.
    """
    rng = random.Random(seed)
    groups: dict[tuple[str, str], list[dict]] = {}
    for c in cells:
        groups.setdefault((c["model"], c["optimizer"]), []).append(c)
    keys = list(groups)
    rng.shuffle(keys)
    for g in keys:
        usual = USUAL_LR.get(g[1])
        rng.shuffle(groups[g])
        if usual is not None:  # stable sort: the shuffle orders lrs at equal distance
            groups[g].sort(key=lambda c, u=usual: abs(math.log10(c["lr"] / u)))
    order, started = [], dict.fromkeys(keys, 0)
    while len(order) < len(cells):
        live = [g for g in keys if started[g] < len(groups[g])]
        g = min(live, key=lambda g: ((started[g] + 1) * cost[g[0]], keys.index(g)))
        order.append(groups[g][started[g]])
        started[g] += 1
    return [{**c, "seed": s} for s in seeds for c in order] if seeds else order


def start_order(plan: Plan) -> list[dict]:
    """The plan's grid cells as :func:`trial_order` orders them, with each model's
    forward FLOPs at the sweep's image size as its cost."""
    size = plan.base_config.get("image_size")
    cost = {
        m: float(forward_flops(m, image_size=size or get_spec(m).paper_input_size))
        for m in plan.models
    }
    cells = [
        {"model": m, "optimizer": o, "lr": lr}
        for m in plan.models
        for o in plan.optimizers
        for lr in plan.lrs
    ]
    seeds = plan.tune.seeds if len(plan.tune.seeds) > 1 else ()
    return trial_order(cells, cost, plan.tune.seed, seeds)
