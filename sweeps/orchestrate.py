"""A sweep, in order: join Ray, open tracking, build (or restore) the Tuner, fit, finish
the trials, publish the results and the report, summarise.

Each step is a function that returns a typed value; :func:`run_sweep` is the whole
sequence. It takes a validated :class:`~sweeps.plan.Plan` and the decoded data, nothing
else: everything that can be wrong with the input failed before this point.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict

from mlflow.tracking import MlflowClient

from sweeps import finish, run_record
from sweeps.experiment_view import experiment_url, mark_experiment
from sweeps.load import data_provenance, data_sha256
from sweeps.plan import Plan
from sweeps.provenance import provenance
from sweeps.publish import Published, publish_results, summary_text
from sweeps.ray_cluster import Cluster, connect
from sweeps.study import StudyMirror, public_url, study_distributions
from sweeps.tracking import MlflowTrialLogger, start_parent_run
from sweeps.tracking_uri import public_uri
from sweeps.trials import collect
from sweeps.tuner import build_tuner
from trainables.data import DATA_ROOT_ENV, DataSplits
from trainables.schema import METRIC


def run_sweep(plan: Plan, data: dict[str, DataSplits]) -> int:
    """Run the plan's trials and publish their tables; the process exit code."""
    started = time.time()
    for label, why in plan.weights.skipped.items():
        print(f"[weights] {label}: {why}", flush=True)
    cluster = connect(plan.resources)
    prov = sweep_provenance(plan, data, cluster)
    logger, run_url = open_tracking(plan, data, prov)
    mirror = StudyMirror(plan.optuna_storage, plan.run_name, study_distributions(plan), plan.cells)
    tuner, scheduler = build_tuner(plan, cluster, data, [logger, mirror])
    results = tuner.fit()
    trials, epochs, confusions = collect(
        results, logger.trial_paths, logger.run_ids, plan.max_epochs, plan.cells
    )
    trials = finish.evaluate_stopped(trials, confusions, data, cluster)
    mirror.reconcile(trials, epochs)
    finish.log_trial_artifacts(logger, trials, epochs, confusions, data)
    done = publish_results(plan, trials, epochs, scheduler, confusions, data, prov, logger, started)
    return summarise(plan, done, run_url)


def sweep_provenance(plan: Plan, data: dict[str, DataSplits], cluster: Cluster) -> dict:
    """What produced these results: command, code, hardware, versions, data, settings."""
    t = plan.tune
    return provenance(
        data_root=plan.data.root_flag or os.environ.get(DATA_ROOT_ENV),
        sweep=plan.sweep.name,
        budget=plan.budget.name,
        budget_settings=asdict(plan.budget),
        search=t.search,
        asha={
            "enabled": t.asha,
            "grace_period": t.grace_period,
            "reduction_factor": t.reduction_factor,
            "quorum": t.quorum,
            "time_attr": "epoch",
            "metric": METRIC,
        },
        data=data_provenance(data),
        tracking_uri=public_uri(plan.tracking_uri),
        run_name=plan.run_name,
        # the Optuna study optuna-dashboard shows (sweeps.study), named after the run
        optuna_study={"storage": public_url(plan.optuna_storage), "name": plan.run_name},
        seed=plan.data.seed,
        # each model's weights file from the weights folder, with its sha256 (each trial's
        # own weights_sha256 is in the trials table and its MLflow tags)
        weights={
            "choice": plan.weights.choice or "the sweep's recipe",
            "folder": str(plan.weights.folder) if plan.weights.folder else None,
            "files": plan.weights.files,
            "skipped": plan.weights.skipped,
        },
        resources={
            "cpus_per_trial": cluster.cpus_per_trial,
            "gpus_per_trial": cluster.gpus_per_trial,
            "cluster": cluster.resources,
        },
    )


def open_tracking(
    plan: Plan, data: dict[str, DataSplits], prov: dict
) -> tuple[MlflowTrialLogger, str]:
    """The sweep's MLflow parent run (new, or the resumed run's) and the logger that
    opens one child run per trial; closes this sweep's runs whose driver died."""
    client = MlflowClient(plan.tracking_uri)
    tags = parent_tags(plan, data, prov)
    run_record.close_dead_runs(client, plan.storage, plan.sweep.name, skip=plan.state_dir)
    if plan.resume:
        exp_id, parent_id = reopen_parent(client, plan)
    else:
        exp_id, parent_id = start_parent_run(
            client, plan.sweep.name, plan.run_name, tags, parent_params(plan, data)
        )
        run_record.start(
            plan.state_dir,
            sweep=plan.sweep.name,
            run_name=plan.run_name,
            mlflow={"experiment_id": exp_id, "parent_run_id": parent_id},
            data_sha256=tags["data_sha256"],
            fingerprint=plan.fingerprint,
            started_utc=prov["date_utc"],
        )
    mark_experiment(client, exp_id)  # the link below opens its runs table, the sweep's columns
    run_url = experiment_url(plan.tracking_uri, exp_id)
    print(f"[mlflow] runs of this sweep: {run_url} (parent run {parent_id})", flush=True)
    shared = {k: tags[k] for k in ("sweep", "budget", "git_commit")}
    logger = MlflowTrialLogger(
        plan.tracking_uri,
        exp_id,
        parent_id,
        shared,
        cells=plan.cells,
        seed_in_name=len(plan.tune.seeds) > 1,
    )
    return logger, run_url


def reopen_parent(client: MlflowClient, plan: Plan) -> tuple[str, str]:
    """The resumed run's MLflow parent, RUNNING again (it was KILLED when its driver died)."""
    exp_id = plan.resume["mlflow"]["experiment_id"]
    parent_id = plan.resume["mlflow"]["parent_run_id"]
    client.update_run(parent_id, status="RUNNING")
    if "cnnsweep.status" in client.get_run(parent_id).data.tags:  # "its driver died"
        client.delete_tag(parent_id, "cnnsweep.status")
    print(f"[resume] {plan.experiment_dir}: continuing MLflow run {parent_id}", flush=True)
    run_record.mark_status(plan.state_dir, "running")
    return exp_id, parent_id


def parent_tags(plan: Plan, data: dict[str, DataSplits], prov: dict) -> dict:
    return {
        "sweep": plan.sweep.name,
        "budget": plan.budget.name,
        "search": plan.tune.search,
        "git_commit": prov["git_commit"],
        "data_sha256": data_sha256(data),
        "data_source": ",".join(d.source for d in data.values()),
        "torch_version": prov["versions"]["torch"],
        "ray_version": prov["versions"]["ray"],
        "seed": plan.data.seed,
    }


def parent_params(plan: Plan, data: dict[str, DataSplits]) -> dict:
    b, t = plan.budget, plan.tune
    return {
        "budget": b.name,
        "search": t.search,
        "models": ",".join(plan.models),
        "optimizers": ",".join(plan.optimizers),
        "lrs": ",".join(map(str, plan.lrs)),
        "epochs": plan.base_config["epochs"],
        "image_size": b.image_size,
        "batch_size": b.batch_size,
        "datasets": ",".join(data),
        **{
            f"{k}_images" + (f"_{n}" if len(data) > 1 else ""): len(getattr(d, k))
            for n, d in data.items()
            for k in ("train", "val", "test")
        },
        "asha": t.asha,
        "grace_period": t.grace_period,
        "reduction_factor": t.reduction_factor,
        "asha_quorum": t.quorum,
    }


def summarise(plan: Plan, done: Published, run_url: str) -> int:
    """The end of the sweep's output, its recorded status, and the exit code."""
    print(
        f"\n{plan.sweep.name} finished (budget {plan.budget.name}, {done.trials} trials, "
        f"{done.stopped_early} stopped early by ASHA, {done.errored} errored, "
        f"{done.wall_s:.0f} s)\n"
    )
    print(summary_text(done.sweep_dir))
    print(f"Tables:  {done.sweep_dir}")
    print(f"MLflow:  {run_url} (runs table: the sweep's columns)")
    print(f"Optuna:  study {plan.run_name!r} in {public_url(plan.optuna_storage)}")
    if done.unlogged:
        print(
            f"warning: {done.unlogged} MLflow call(s) could not be logged (server "
            f"unreachable); log them later with: python -m sweeps.tracking replay {done.spooled}"
        )
    run_record.mark_status(plan.state_dir, "failed" if done.errored else "finished")
    if done.errored:
        print(f"error: {done.errored} trial(s) errored; see {plan.experiment_dir}")
        return 1
    return 0
