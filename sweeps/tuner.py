"""The Tuner of a sweep: its search space, ASHA, the progress table, and the restore of a
killed sweep. Everything Ray Tune is told is in :func:`build_tuner`, on one screen."""

from __future__ import annotations

import os

from optuna.samplers import TPESampler
from pyarrow.fs import FileType
from ray import tune
from ray.train._internal.checkpoint_manager import _CheckpointManager
from ray.tune import CLIReporter
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import BasicVariantGenerator
from ray.tune.search.optuna import OptunaSearch

import search_spaces
from sweeps.asha import STATE_FILE, ResumableASHA, start_order
from sweeps.plan import Plan
from sweeps.ray_cluster import Cluster
from trainables.progress import driver_style
from trainables.schema import METRIC, MODE, PROGRESS_COLUMNS
from trainables.trainable import train_trial


def build_tuner(
    plan: Plan, cluster: Cluster, data: dict, callbacks: list[tune.Callback]
) -> tuple[tune.Tuner, TrialScheduler]:
    """A new Tuner for the plan, or the restored one of the run --resume continues.
    ``callbacks``: the MLflow logger and the Optuna study's mirror."""
    trainable = tune.with_resources(
        tune.with_parameters(train_trial, data=data, cells=plan.cells, progress=driver_style()),
        {"cpu": cluster.cpus_per_trial, "gpu": cluster.gpus_per_trial},
    )
    scheduler = make_scheduler(plan)
    # Tune's newer console output picks the first four reported metrics and ignores a
    # reporter: turned off for the progress table (see progress_reporter)
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    if plan.resume:
        return restore_tuner(plan, trainable, callbacks, scheduler), scheduler
    space, search_alg, num_samples = search_space(plan)
    ordered = isinstance(search_alg, BasicVariantGenerator)
    tuner = tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode=MODE,
            scheduler=scheduler,
            search_alg=search_alg,
            num_samples=num_samples,
            # an ordered grid's generator holds the limit itself (Tune ignores this for it)
            max_concurrent_trials=None if ordered else plan.resources.max_concurrent,
            trial_dirname_creator=cell_dirname if ordered else None,
        ),
        run_config=tune.RunConfig(
            name=plan.run_name,
            storage_path=str(plan.storage),
            callbacks=callbacks,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=plan.tune.max_failures),
            progress_reporter=progress_reporter(plan),
            verbose=1,
        ),
    )
    return tuner, scheduler


def search_space(plan: Plan) -> tuple[dict, OptunaSearch | BasicVariantGenerator | None, int]:
    """(param_space, search algorithm, num_samples): every grid cell once (under ASHA in
    the order :func:`sweeps.asha.start_order` chooses), or Optuna's TPE over the same
    categories and the paper's lr range."""
    t = plan.tune
    optuna = OptunaSearch(sampler=TPESampler(seed=t.seed)) if t.search == "optuna" else None
    # several seeds: every cell once per seed (a row's or the base config's seed gives way)
    seeds = {"seed": tune.grid_search(list(t.seeds))} if len(t.seeds) > 1 else {}
    if plan.cells is not None:  # table rows: Tune sees the row label (and Optuna's lr)
        labels = list(plan.cells)
        if t.search == "grid":
            return {"label": tune.grid_search(labels), **seeds}, None, 1
        space = {"label": tune.choice(labels), "lr": tune.loguniform(*plan.sweep.lr_range)}
        return space, optuna, t.num_samples
    if t.search == "grid":
        grid = search_spaces.grid(plan.models, plan.optimizers, plan.lrs)
        space = {**plan.base_config, **grid, **seeds}
        if not t.asha:
            return space, None, 1
        # each cell given in full: the grid's axes stay in the space, as its record
        ordered = BasicVariantGenerator(
            points_to_evaluate=start_order(plan), max_concurrent=plan.resources.max_concurrent or 0
        )
        return space, ordered, 1
    space = search_spaces.optuna_space(plan.models, plan.optimizers, plan.sweep.lr_range)
    return {**plan.base_config, **space}, optuna, t.num_samples


CELL_KEYS = ("model", "optimizer", "lr", "seed")


def cell_dirname(trial) -> str:
    """A trial's folder, named after its cell as Tune names a grid trial's: cells given in
    full (``points_to_evaluate``) carry no tag of their own."""
    c = trial.config
    cell = ",".join(f"{k}={c[k]:g}" if k == "lr" else f"{k}={c[k]}" for k in CELL_KEYS if k in c)
    return f"{trial.trainable_name}_{trial.trial_id}_{cell}"


def make_scheduler(plan: Plan) -> TrialScheduler:
    if not plan.tune.asha:
        return FIFOScheduler()
    return ResumableASHA(
        plan.state_dir / STATE_FILE,
        protected=plan.protected,
        groups=plan.asha_groups,
        time_attr="epoch",
        max_t=plan.max_epochs,
        grace_period=plan.tune.grace_period,
        reduction_factor=plan.tune.reduction_factor,
        quorum=plan.tune.quorum,
    )


def progress_reporter(plan: Plan) -> CLIReporter:
    """Tune's table with the columns a person watches: the cell (model/optimizer/lr, or
    the paper's row label), the epoch, losses, validation accuracy and speed, best first."""
    if plan.cells is not None:
        params = {"label": "row", **({"lr": "lr"} if plan.tune.search == "optuna" else {})}
    else:
        params = {"model": "model", "optimizer": "optimizer", "lr": "lr"}
    if len(plan.tune.seeds) > 1:  # the same cell once per seed: tell the rows apart
        params["seed"] = "seed"
    return CLIReporter(
        parameter_columns=params,
        metric_columns=PROGRESS_COLUMNS,
        sort_by_metric=True,  # by TuneConfig's metric and mode
        # explicit: the default reads Tune's global verbosity when the reporter is built,
        # which an earlier sweep in the same process has lowered (then no table at all)
        print_intermediate_tables=True,
        max_progress_rows=40,
        max_column_length=56,  # a row label names its cell in full (leak-free twins too)
        max_report_frequency=30,
    )


def restore_tuner(plan: Plan, trainable, callbacks: list, scheduler) -> tune.Tuner:
    """Tune's restore of a killed sweep, with this driver's callbacks and scheduler.

    ``Tuner.restore`` unpickles the callbacks and scheduler of the original driver; Ray
    2.60 has no public way to pass new ones, so they are swapped in before ``fit``: the
    MLflow logger and the study's mirror then get their saved state (run ids, queued
    calls, Optuna trial ids) through ``set_state`` and the scheduler reads its rungs from
    ``asha_state.json``. :class:`LostCheckpointGuard` restarts a trial whose recorded
    checkpoint is gone.
    """
    tuner = tune.Tuner.restore(
        str(plan.experiment_dir), trainable, resume_unfinished=True, resume_errored=True
    )
    internal = tuner._local_tuner
    internal._run_config.callbacks = [*callbacks, LostCheckpointGuard()]
    internal._run_config.progress_reporter = progress_reporter(plan)
    internal._tune_config.scheduler = scheduler
    return tuner


class LostCheckpointGuard(tune.Callback):
    """Restarts from epoch 1 a restored trial whose recorded checkpoint no longer exists.

    Tune deletes a trial's previous checkpoint (``num_to_keep=1``) as soon as it records a
    new one, and uploads the experiment state that names the new one afterwards, in the
    background. A driver killed in between is restored with trials that point at a deleted
    checkpoint, and each restore attempt fails until the trial errors
    (test_faults.py::test_killed_driver_resumes hit it). The newer checkpoint on disk is no
    way out: Tune's restored result files end before it, so its epochs would be missing
    from ``epochs.parquet``. Running the trial again from the start re-reports the lost
    epochs (the tables keep each epoch's first report, the MLflow logger skips epochs it
    has, ASHA skips rungs that hold the trial) and loses nothing but time.
    """

    def __init__(self):
        self.checked = False

    def on_step_begin(self, iteration, trials, **info):
        if self.checked:  # restored trials are all there at the first step
            return
        self.checked = True
        for trial in trials:
            ckpt = trial.checkpoint
            if trial.status in ("TERMINATED", "ERROR") or ckpt is None:
                continue
            if ckpt.filesystem.get_file_info(ckpt.path).type != FileType.NotFound:
                continue
            print(
                f"[resume] {trial}: its last recorded checkpoint {ckpt.path} is gone (the "
                "driver died while Tune replaced it); the trial restarts from epoch 1",
                flush=True,
            )
            manager = trial.run_metadata.checkpoint_manager
            trial.run_metadata.checkpoint_manager = _CheckpointManager(
                checkpoint_config=manager.checkpoint_config
            )
            trial.run_metadata.invalidate_cache()
