"""The sweep's Optuna study, kept in an RDB storage so that ``optuna-dashboard`` shows it
live: one Optuna trial per Tune trial (grid sweeps too), its validation accuracy per
epoch as intermediate values, PRUNED when ASHA stopped it, FAIL when it errored.

The study is named after the sweep's run and lives in ``--optuna-storage`` /
``$CNNSWEEP_OPTUNA_STORAGE`` (SQLite beside MLflow's under ``make up``, the compose
file's PostgreSQL), default ``<storage path>/optuna.db``. ``--resume`` continues it:
Tune trials are matched to Optuna trials by the user attribute ``tune_trial_id``.

It is a view of the sweep, written from the driver by a Tune callback; under
``--search optuna`` Tune's ``OptunaSearch`` keeps its sampler's own study in memory
(Ray tells that one COMPLETE for a trial ASHA stopped, which this one must not). A
storage that fails mid-sweep costs a warning, never the sweep.
"""

from __future__ import annotations

import itertools
import os
import warnings
from contextlib import closing
from pathlib import Path

import optuna
import pandas as pd
from optuna.distributions import BaseDistribution, FloatDistribution
from optuna.trial import TrialState
from ray import tune
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from sweeps.importance import distributions, judged_params, plain
from sweeps.plan import Plan
from sweeps.trials import config_columns, stop_reason, stopped_by_scheduler
from trainables.config import ConfigError
from trainables.schema import METRIC
from trainables.trainable import resolve_config

TUNE_ID = "tune_trial_id"  # the user attribute that ties an Optuna trial to its Tune trial
INTERMEDIATE = METRIC  # reported per epoch, as a fraction like everywhere else
VALUE = "best_val_acc"  # a trial's value: what validation ranks trials by


def public_url(url: str) -> str:
    """The storage URL without its password, for logs and provenance."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all: show it, it holds no password SQLAlchemy sees
        return url


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage (its schema created or upgraded); SQLite waits up to 30 s for
    the dashboard's reads instead of failing with "database is locked"."""
    kwargs = {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {}
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)


def check_storage(url: str) -> None:
    """Fail before any trial when Optuna could not use the storage URL; writes nothing (the
    study is created when the first trial starts)."""
    allowed = (
        "allowed: a SQLAlchemy URL of a database Optuna can use, e.g. "
        "sqlite:////abs/path/optuna.db or postgresql+psycopg2://user@host/db"
    )
    try:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            _check_sqlite_file(parsed.database)
            return
        with closing(create_engine(url).connect()):
            pass
    except ConfigError as exc:
        raise ConfigError(f"--optuna-storage {public_url(url)}: {exc}; {allowed}") from None
    except Exception as exc:  # SQLAlchemy: ArgumentError, OperationalError, NoSuchModule...
        first = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        raise ConfigError(
            f"--optuna-storage {public_url(url)}: cannot open it ({first}); {allowed}"
        ) from None


def _check_sqlite_file(database: str | None) -> None:
    """A file the sweep can create or write: its nearest existing folder is writable."""
    if not database or database == ":memory:":
        raise ConfigError("an in-memory SQLite study dies with the driver; name a file")
    path = Path(database)
    if path.exists():
        if not os.access(path, os.W_OK):
            raise ConfigError(f"{path} is not writable")
        return
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise ConfigError(f"cannot create {path}: {folder} is not a writable folder")


def plan_configs(plan: Plan) -> pd.DataFrame:
    """Every trial config the plan can produce, as trials-table columns (and, under Optuna
    search, the ends of the sampled lr range)."""
    if plan.cells is not None:
        configs = list(plan.cells.values())
    else:
        cells = itertools.product(plan.models, plan.optimizers, plan.lrs)
        configs = [{**plan.base_config, "model": m, "optimizer": o, "lr": lr} for m, o, lr in cells]
    frame = pd.DataFrame([config_columns(c, int(c["epochs"])) for c in configs])
    if plan.tune.search == "optuna":
        lo, hi = plan.sweep.lr_range
        frame = pd.concat([frame, frame.iloc[[0, 0]].assign(lr=[lo, hi])], ignore_index=True)
    return frame


def study_distributions(plan: Plan) -> dict[str, BaseDistribution]:
    """The study's parameters: the hyperparameters that vary in this plan, and the dataset
    when the sweep trains on several."""
    frame = plan_configs(plan)
    params = judged_params(frame)
    if frame["dataset"].nunique() > 1:
        params = ["dataset", *params]
    return distributions(frame, params)


class StudyMirror(tune.Callback):
    """Writes each Tune trial into the study as it runs (see the module docstring)."""

    def __init__(self, url: str, study_name: str, dists: dict, cells: dict | None):
        self._url = url  # may hold a password: never pickled (Tune saves callbacks)
        self.where = public_url(url)
        self.study_name = study_name
        self.dists = dists
        self.cells = cells
        self.ids: dict[str, int] = {}  # Tune trial id -> the storage's trial id
        self.best: dict[str, float] = {}  # Tune trial id -> best val_acc reported so far
        self.ended: set[str] = set()  # trials whose Optuna state is final
        self._storage: optuna.storages.RDBStorage | None = None
        self._study_id: int | None = None
        self._warned = False

    def __getstate__(self):
        return {**self.__dict__, "_url": None, "_storage": None, "_study_id": None}

    def get_state(self) -> dict:
        return {"ids": self.ids, "best": self.best, "ended": sorted(self.ended)}

    def set_state(self, state: dict) -> None:
        self.ids |= state.get("ids", {})
        self.best |= state.get("best", {})
        self.ended |= set(state.get("ended", ()))

    def open(self) -> int:
        """The study (created, or the resumed run's); returns its id in the storage."""
        if self._study_id is None:
            database = make_url(self._url).database
            if make_url(self._url).get_backend_name() == "sqlite" and database:
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            self._storage = open_storage(self._url)
            study = optuna.create_study(
                storage=self._storage,
                study_name=self.study_name,
                direction="maximize",
                load_if_exists=True,
            )
            with warnings.catch_warnings():  # "experimental" since Optuna 3.2
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names([VALUE])
            self._study_id = self._storage.get_study_id_from_name(self.study_name)
        return self._study_id

    # ---------------------------------------------------------------- Tune hooks

    def on_trial_start(self, iteration, trials, trial, **info):
        self._safely(lambda: self._trial_id(self._row(trial)))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._safely(self._report, trial, result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._safely(self._end, trial, "TERMINATED")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._safely(self._end, trial, "ERROR")

    # ------------------------------------------------------------------ writing

    def _safely(self, fn, *args) -> None:
        try:
            fn(*args)
        except Exception as exc:  # a dashboard's database is never worth a sweep
            if not self._warned:
                print(
                    f"[optuna] study {self.study_name} at {self.where}: {type(exc).__name__}: "
                    f"{str(exc)[:200]}; the sweep goes on (MLflow and the tables are the record)",
                    flush=True,
                )
                self._warned = True

    def _row(self, trial) -> dict:
        """A Tune trial's config as trials-table columns."""
        cfg = resolve_config(trial.config, self.cells)
        return {**config_columns(cfg, int(cfg.get("epochs", 0))), "trial_id": trial.trial_id}

    def _trial_id(self, row: dict) -> int:
        """The Optuna trial of a Tune trial: known, found by its attribute, or new."""
        tid = row["trial_id"]
        study_id = self.open()  # also after a restore: the ids come back, the storage not
        if tid in self.ids:
            return self.ids[tid]
        storage = self._storage
        for t in storage.get_all_trials(study_id, deepcopy=False):
            if t.user_attrs.get(TUNE_ID) == tid:  # a resumed sweep's: carry on with it
                if t.state.is_finished():
                    self.ended.add(tid)
                self.ids[tid] = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
                return self.ids[tid]
        oid = storage.create_new_trial(study_id)
        for name, dist in self.dists.items():
            value = float(row[name]) if isinstance(dist, FloatDistribution) else row[name]
            storage.set_trial_param(oid, name, dist.to_internal_repr(value), dist)
        storage.set_trial_user_attr(oid, TUNE_ID, tid)
        for key in ("label", "dataset", "seed"):
            if row.get(key) not in (None, "") and key not in self.dists:
                storage.set_trial_user_attr(oid, key, plain(row[key]))
        self.ids[tid] = oid
        return oid

    def _report(self, trial, result: dict) -> None:
        oid = self._trial_id(self._row(trial))
        if trial.trial_id in self.ended or INTERMEDIATE not in result:
            return
        value = float(result[INTERMEDIATE])
        self.best[trial.trial_id] = max(value, self.best.get(trial.trial_id, value))
        step = int(result.get("epoch", result.get("training_iteration", 0)))
        self._storage.set_trial_intermediate_value(oid, step, value)

    def _end(self, trial, status: str) -> None:
        """COMPLETE (its own epochs or stopping rule), PRUNED (ASHA), FAIL (error); the
        value is the best validation accuracy reached, the stop reason a user attribute."""
        row = self._row(trial)
        last = trial.last_result or {}
        epoch = int(last.get("epoch", 0))
        rule = last.get("stopped_by_rule")
        by_asha = stopped_by_scheduler(status, epoch, row["max_epochs"], rule)
        why = stop_reason(status, epoch, row["max_epochs"], rule)
        self._finish(row, status, by_asha, self.best.get(trial.trial_id), why)

    def _finish(self, row: dict, status: str, by_asha: bool, best, why: str) -> None:
        tid = row["trial_id"]
        oid = self._trial_id(row)
        if tid in self.ended:
            return
        self._storage.set_trial_user_attr(oid, "stop_reason", why)
        state = TrialState.PRUNED if by_asha else TrialState.COMPLETE
        if status == "ERROR" or best is None or pd.isna(best):
            state, best = TrialState.FAIL, None  # Optuna needs a value to complete
        self._storage.set_trial_state_values(oid, state, None if best is None else [float(best)])
        self.ended.add(tid)

    # ------------------------------------------------------------- after the sweep

    def reconcile(self, trials: pd.DataFrame, epochs: pd.DataFrame) -> None:
        """Make the study say what the trials table says: a trial whose end this driver
        never saw (its predecessor was killed between Tune's decision and the write, or the
        database was down) gets its epochs and final state from the tables."""
        self._safely(self._reconcile, trials, epochs)

    def _reconcile(self, trials: pd.DataFrame, epochs: pd.DataFrame) -> None:
        for row in trials.to_dict("records"):
            oid = self._trial_id(row)
            if row["trial_id"] in self.ended:
                continue
            mine = epochs[epochs["trial_id"] == row["trial_id"]]
            for e in mine.itertuples():
                self._storage.set_trial_intermediate_value(oid, int(e.epoch), float(e.val_acc))
            self._finish(
                row,
                row["status"],
                bool(row["stopped_early"]),
                row["best_val_acc"],
                row["stop_reason"],
            )
