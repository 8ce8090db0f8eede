"""Running a validated :class:`~sweeps.runner.Plan`: Ray, the Tuner, test evaluation, results.

Order of work, and why:
1. join or start Ray, then check a GPU request against what the cluster has;
2. open the sweep's parent MLflow run; a driver-side callback opens one child per trial;
3. ``Tuner.fit`` with ASHA on ``val_acc`` (time attribute ``epoch``), grid or Optuna;
4. trials that ASHA stopped early never ran their test evaluation, so their last
   checkpoint (which holds the best-validation weights) is evaluated on the test split
   by Ray tasks with the same resources: every grid cell gets a test accuracy;
5. figures per trial and the paper tables go to MLflow and to ``results/<sweep>/``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import ray
from mlflow.tracking import MlflowClient
from ray import tune
from ray.tune import CLIReporter
from ray.tune.schedulers import FIFOScheduler

import search_spaces
from sweeps import plots
from sweeps.cluster import ensure_token
from sweeps.report import render, report_artifacts, terminal_summary
from sweeps.results import (
    copy_file,
    provenance,
    provenance_md,
    publish,
    run_folder,
    to_markdown,
    write_parquet,
    write_text,
)
from sweeps.resume import (
    ASHA_STATE,
    SIDECAR,
    ResumableASHA,
    close_dead_runs,
    driver_record,
    fingerprint,
    mark_status,
    write_json,
)
from sweeps.runner import METRIC, MODE, Plan, fail
from sweeps.tracking import MlflowTrialLogger, public_uri, start_parent_run
from trainables.datasets import DATA_ROOT_ENV, DataSplits
from trainables.progress import driver_style
from trainables.trainable import (
    EPOCH_METRICS,
    TEST_METRICS,
    evaluate_checkpoint,
    resolve_config,
    train_trial,
)


def init_ray(address: str | None) -> None:
    if ray.is_initialized():
        return
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address, log_to_driver=True)
    else:  # a private single-node cluster on loopback, for `python sweeps/<name>.py`
        print(ensure_token(), flush=True)  # else Ray writes one readable by everyone
        # address="local": a new private instance, never a stale `ray start` cluster that
        # /tmp/ray/ray_current_cluster still names
        ray.init(address="local", include_dashboard=False, _node_ip_address="127.0.0.1")


def unplaceable(cpus: int, gpus: float) -> str | None:
    """Why no node of the cluster could ever run one trial (None: one can).

    A trial's resources must fit on one node; Tune would otherwise keep the trial pending
    forever. Checked against the nodes alive now (an autoscaler's future nodes are not
    known here)."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    most_gpus = max((n.get("GPU", 0) for n in nodes), default=0)
    if gpus > most_gpus:
        total = ray.cluster_resources().get("GPU", 0)
        return (
            f"--gpus-per-trial {gpus:g}: the Ray cluster has {total:g} "
            f"GPUs, at most {most_gpus:g} on one node; allowed: 0 to {most_gpus:g}"
        )
    fits = [n.get("CPU", 0) for n in nodes if n.get("GPU", 0) >= gpus]
    most_cpus = max(fits, default=0)
    if cpus > most_cpus:
        return (
            f"--cpus-per-trial {cpus}: no node of the Ray cluster has {cpus} CPUs"
            + (f" beside {gpus:g} GPUs" if gpus else "")
            + f" (the largest has {most_cpus:g}); allowed: 1..{int(most_cpus)}"
        )
    return None


@ray.remote
def _final_eval(checkpoint, config: dict, data: dict[str, DataSplits]) -> dict:
    return evaluate_checkpoint(checkpoint, config, data)


def data_provenance(data: dict[str, DataSplits]) -> dict:
    one = {n: {"source": d.source, "sha256": d.sha256, **d.info} for n, d in data.items()}
    if len(one) == 1:
        (name, d), *_ = one.items()
        return {"name": name, **d}
    return one


def run_plan(plan: Plan, args: argparse.Namespace, data: dict[str, DataSplits], uri: str) -> int:
    t_start = time.time()
    try:
        init_ray(args.ray_address)
    except (ConnectionError, ray.exceptions.RayError) as exc:
        where = args.ray_address or os.environ.get("RAY_ADDRESS")
        return fail(
            f"cannot join the Ray cluster at {where} ({str(exc).splitlines()[0][:300]}); "
            "allowed: the address of a running head (ray start --head) reachable with "
            "its auth token (RAY_AUTH_MODE=token, ~/.ray/auth_token)"
        )
    cluster_gpus = ray.cluster_resources().get("GPU", 0)
    gpus = args.gpus_per_trial if args.gpus_per_trial is not None else (1 if cluster_gpus else 0)
    cpus = plan.base_config["num_threads"]
    if msg := unplaceable(cpus, gpus):
        return fail(msg)
    b = plan.budget
    client = MlflowClient(uri)
    prov = provenance(
        data_root=args.data_root or os.environ.get(DATA_ROOT_ENV),
        sweep=plan.sweep.name,
        budget=b.name,
        budget_settings=b.__dict__,
        search=plan.search,
        asha={
            "enabled": plan.asha,
            "grace_period": plan.grace_period,
            "reduction_factor": plan.reduction_factor,
            "time_attr": "epoch",
            "metric": METRIC,
        },
        data=data_provenance(data),
        tracking_uri=public_uri(uri),
        run_name=plan.run_name,
        seed=args.seed,
        resources={
            "cpus_per_trial": cpus,
            "gpus_per_trial": gpus,
            "cluster": {
                k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU", "memory")
            },
        },
    )
    tags = {
        "sweep": plan.sweep.name,
        "budget": b.name,
        "search": plan.search,
        "git_commit": prov["git_commit"],
        "data_sha256": ",".join(d.sha256 for d in data.values()),
        "data_source": ",".join(d.source for d in data.values()),
        "torch_version": prov["versions"]["torch"],
        "ray_version": prov["versions"]["ray"],
        "seed": args.seed,
    }
    close_dead_runs(client, plan.storage, plan.sweep.name, skip=plan.state_dir)
    if plan.resume:
        exp_id = plan.resume["mlflow"]["experiment_id"]
        parent_id = plan.resume["mlflow"]["parent_run_id"]
        if plan.resume.get("data_sha256") != tags["data_sha256"]:
            return fail(
                f"--resume: the data's sha256 is {tags['data_sha256']} but the run being "
                f"resumed used {plan.resume.get('data_sha256')}; allowed: the same data"
            )
        client.update_run(parent_id, status="RUNNING")
        if "cnnsweep.status" in client.get_run(parent_id).data.tags:  # "its driver died"
            client.delete_tag(parent_id, "cnnsweep.status")
        print(f"[resume] {plan.experiment_dir}: continuing MLflow run {parent_id}", flush=True)
        mark_status(plan.state_dir, "running")
    else:
        exp_id, parent_id = start_parent_run(
            client,
            plan.sweep.name,
            plan.run_name,
            tags,
            {
                "budget": b.name,
                "search": plan.search,
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
                "asha": plan.asha,
                "grace_period": plan.grace_period,
                "reduction_factor": plan.reduction_factor,
            },
        )
        write_json(
            plan.state_dir / SIDECAR,
            {
                "sweep": plan.sweep.name,
                "run_name": plan.run_name,
                "mlflow": {"experiment_id": exp_id, "parent_run_id": parent_id},
                "data_sha256": tags["data_sha256"],
                "plan": fingerprint(plan),
                "status": "running",
                "driver": driver_record(),
                "started_utc": prov["date_utc"],
            },
        )
    run_url = f"{public_uri(uri).rstrip('/')}/#/experiments/{exp_id}/runs/{parent_id}"
    print(f"[mlflow] parent run {run_url}", flush=True)
    logger = MlflowTrialLogger(
        uri,
        exp_id,
        parent_id,
        {k: tags[k] for k in ("sweep", "budget", "git_commit")},
        cells=plan.cells,
    )

    space = dict(plan.base_config)
    if plan.cells is not None:  # table rows: Tune sees the row label (and Optuna's lr)
        from ray.tune.search.optuna import OptunaSearch

        labels = list(plan.cells)
        space = {"label": tune.grid_search(labels)} if plan.search == "grid" else {}
        search_alg, num_samples = None, 1
        if plan.search == "optuna":
            from optuna.samplers import TPESampler

            space = {"label": tune.choice(labels), "lr": tune.loguniform(*plan.sweep.lr_range)}
            search_alg = OptunaSearch(sampler=TPESampler(seed=args.seed))
            num_samples = plan.num_samples
    elif plan.search == "grid":
        space |= search_spaces.grid(plan.models, plan.optimizers, plan.lrs)
        search_alg, num_samples = None, 1
    else:
        from optuna.samplers import TPESampler
        from ray.tune.search.optuna import OptunaSearch

        space |= search_spaces.optuna_space(plan.models, plan.optimizers, plan.sweep.lr_range)
        search_alg = OptunaSearch(sampler=TPESampler(seed=args.seed))
        num_samples = plan.num_samples
    epochs = (
        max(c["epochs"] for c in plan.cells.values()) if plan.cells else plan.base_config["epochs"]
    )
    scheduler = (
        ResumableASHA(
            plan.state_dir / ASHA_STATE,
            time_attr="epoch",
            max_t=epochs,
            grace_period=plan.grace_period,
            reduction_factor=plan.reduction_factor,
        )
        if plan.asha
        else FIFOScheduler()
    )
    trainable = tune.with_resources(
        tune.with_parameters(train_trial, data=data, cells=plan.cells, progress=driver_style()),
        {"cpu": cpus, "gpu": gpus},
    )
    if plan.resume:
        tuner = restore_tuner(plan, trainable, logger, scheduler)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=space,
            tune_config=tune.TuneConfig(
                metric=METRIC,
                mode=MODE,
                scheduler=scheduler,
                search_alg=search_alg,
                num_samples=num_samples,
                max_concurrent_trials=args.max_concurrent,
            ),
            run_config=tune.RunConfig(
                name=plan.run_name,
                storage_path=str(plan.storage),
                callbacks=[logger],
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                failure_config=tune.FailureConfig(max_failures=args.max_failures),
                progress_reporter=progress_reporter(plan),
                verbose=1,
            ),
        )
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # our reporter's table (see progress_reporter)
    results = tuner.fit()

    trials, epochs_df, confusions = collect(results, logger, epochs, plan.cells)
    # Test evaluation of trials that ASHA stopped before their own final epoch.
    todo = trials.index[trials["test_acc"].isna() & (trials["status"] == "TERMINATED")]
    if len(todo):
        print(f"[test] evaluating {len(todo)} early-stopped trials' best weights", flush=True)
        data_ref = ray.put(data)
        refs = {
            i: _final_eval.options(num_cpus=cpus, num_gpus=gpus).remote(
                trials.at[i, "_checkpoint"], trials.at[i, "_config"], data_ref
            )
            for i in todo
        }
        for i, ref in refs.items():
            out = ray.get(ref)
            for k in (*TEST_METRICS, "weights_source", "test_per_class_acc", "test_worst"):
                if k in out:
                    trials.at[i, k] = out[k]
            trials.at[i, "test_evaluated_by"] = "sweep"
            confusions[trials.at[i, "trial_id"]] = json.loads(out["test_confusion"])
    trials = trials.drop(columns=["_checkpoint", "_config"])
    log_trial_artifacts(logger, trials, epochs_df, confusions, data)

    tables = plan.sweep.make_tables(trials)
    extra = {"asha_decisions": asha_decisions(scheduler, trials)} if plan.asha else {}
    n_err = int((trials["status"] == "ERROR").sum())
    prov |= {
        "wall_s": round(time.time() - t_start, 1),
        "mlflow_parent_run_id": parent_id,
        "mlflow_experiment_id": exp_id,
        "trials": len(trials),
        "trials_errored": n_err,
    }
    out = plan.results_dir
    heat = None
    with tempfile.TemporaryDirectory() as tmp:
        if trials["test_acc"].notna().any():
            heat = plots.heatmap_png(
                trials.assign(test_acc_pct=100 * trials["test_acc"]),
                "test_acc_pct",
                f"{plan.sweep.name} ({b.name}): test accuracy %",
                Path(tmp) / "heatmap_test_acc.png",
                cbar_label="test accuracy (%)",
                **heatmap_axes(plan, trials),
            )
        figures = [heat] if heat else []
        figures += best_trial_figures(trials, confusions, data, Path(tmp))
        written = write_results(out, trials, epochs_df, tables, prov, figures, extra)
        for path in written:
            logger.submit("artifact", run=parent_id, path=str(path))
        for path, folder in render_report(out):
            logger.submit("artifact", run=parent_id, path=str(path), artifact_path=folder)
        best = trials.sort_values("best_val_acc", ascending=False).iloc[0]
        now = int(time.time() * 1000)
        summary = [["best_val_acc", float(best["best_val_acc"]), now, 0]]
        if pd.notna(best["test_acc"]):
            summary.append(["best_trial_test_acc", float(best["test_acc"]), now, 0])
        best_tag = [["best_trial", best["trial_id"]]]
        logger.submit("log", run=parent_id, metrics=summary, tags=best_tag)
        logger.submit("terminate", run=parent_id, status="FAILED" if n_err else "FINISHED")
        # artifacts live in tmp: wait for MLflow here, then spool what is still unlogged
        unlogged = logger.flush(wait_s=args.mlflow_wait)
        spooled = logger.spool(plan.state_dir / "mlflow_pending")
        logger.close()

    print(
        f"\n{plan.sweep.name} finished (budget {b.name}, {len(trials)} trials, "
        f"{trials['stopped_early'].sum()} stopped early by ASHA, {n_err} errored, "
        f"{prov['wall_s']:.0f} s)\n"
    )
    print(summary_text(out))
    print(f"Tables:  {out}")
    print(f"MLflow:  {run_url}")
    if unlogged:
        print(
            f"warning: {unlogged} MLflow call(s) could not be logged (server unreachable); "
            f"log them later with: python -m sweeps.tracking replay {spooled}"
        )
    mark_status(plan.state_dir, "failed" if n_err else "finished")
    if n_err:
        print(f"error: {n_err} trial(s) errored; see {plan.experiment_dir}")
        return 1
    return 0


def summary_text(sweep_dir: Path) -> str:
    """The end of the sweep's output (see report.terminal_summary); the tables are
    already written, so a summary that fails is a warning, never a failed sweep."""
    try:
        return terminal_summary(sweep_dir)
    except Exception as exc:
        return f"warning: no summary ({type(exc).__name__}: {exc}); the tables are in {sweep_dir}"


def progress_reporter(plan: Plan) -> CLIReporter:
    """Tune's table with the columns a person watches: the cell (model/optimizer/lr, or
    the paper's row label), the epoch, losses, validation accuracy and speed, best first.

    Tune's newer console output picks the first four reported metrics and ignores a
    reporter, so the sweep turns it off (``RAY_AIR_NEW_OUTPUT=0``) for this table.
    """
    if plan.cells is not None:
        params = {"label": "row", **({"lr": "lr"} if plan.search == "optuna" else {})}
    else:
        params = {"model": "model", "optimizer": "optimizer", "lr": "lr"}
    return CLIReporter(
        parameter_columns=params,
        metric_columns={
            "epoch": "epoch",
            "train_loss": "train_loss",
            "val_loss": "val_loss",
            "val_acc": "val_acc",
            "images_per_s": "img/s",
        },
        sort_by_metric=True,  # by TuneConfig's metric and mode
        # explicit: the default reads Tune's global verbosity when the reporter is built,
        # which an earlier sweep in the same process has lowered (then no table at all)
        print_intermediate_tables=True,
        max_progress_rows=40,
        max_report_frequency=30,
    )


def restore_tuner(plan: Plan, trainable, logger: MlflowTrialLogger, scheduler) -> tune.Tuner:
    """Tune's restore of a killed sweep, with this driver's MLflow logger and scheduler.

    ``Tuner.restore`` unpickles the callbacks and scheduler of the original driver; Ray
    2.60 has no public way to pass new ones, so they are swapped in before ``fit``: the
    logger then gets the saved logging state (run ids, queued calls) through
    ``set_state`` and the scheduler reads its rungs from ``asha_state.json``.
    """
    tuner = tune.Tuner.restore(
        str(plan.experiment_dir), trainable, resume_unfinished=True, resume_errored=True
    )
    internal = tuner._local_tuner
    internal._run_config.callbacks = [logger]
    internal._run_config.progress_reporter = progress_reporter(plan)
    internal._tune_config.scheduler = scheduler
    return tuner


def render_report(sweep_dir: Path) -> list[tuple[Path, str | None]]:
    """The report (Markdown, HTML, figures) from the tables just published, as files and
    their MLflow artifact folders; a report that fails to render is a warning, never a
    failed sweep (the tables are already written)."""
    try:
        return report_artifacts(render(sweep_dir))
    except Exception as exc:
        print(f"warning: the report could not be rendered ({type(exc).__name__}: {exc})")
        return []


def heatmap_axes(plan: Plan, trials: pd.DataFrame) -> dict:
    """Rows and columns of the test-accuracy heat-map: model/optimizer x lr for grids;
    for table rows, model x dataset when that names each trial, else row x dataset."""
    if not plan.cells:
        return {"rows": [(m, o) for m in plan.models for o in plan.optimizers]}
    if not trials.duplicated(["model", "dataset"]).any():
        models = dict.fromkeys(c["model"] for c in plan.cells.values())
        return {"index": ["model"], "columns": "dataset", "rows": [(m,) for m in models]}
    return {"index": ["label"], "columns": "dataset", "rows": [(c,) for c in plan.cells]}


def best_trial_figures(
    trials: pd.DataFrame, confusions: dict, data: dict[str, DataSplits], folder: Path
) -> list[Path]:
    """Per dataset, the trial validation likes best: its test confusion matrix and (when
    the trial reported them) its most confidently wrong test images."""
    out = []
    done = trials[trials["test_acc"].notna()]
    for name, group in done.groupby("dataset", sort=False):
        best = group.loc[group["best_val_acc"].idxmax()]
        d = data[name]
        title = f"best on {name} by validation: {best['label'] or best['model']}"
        if best["trial_id"] in confusions:
            out.append(
                plots.confusion_matrix_png(
                    np.array(confusions[best["trial_id"]]),
                    list(d.classes),
                    f"{title}\ntest acc {100 * best['test_acc']:.2f} %",
                    folder / f"best_{name}_confusion.png",
                )
            )
        if isinstance(best.get("test_worst"), str):
            out.append(worst_png(best, d, title, folder / f"best_{name}_worst_images.png"))
    return out


def worst_png(row, d: DataSplits, title: str, path: Path) -> Path:
    worst = np.array(json.loads(row["test_worst"]), dtype=float).reshape(-1, 4)
    idx = worst[:, 0].astype(int)
    return plots.worst_images_png(
        d.test.images[idx],
        worst[:, 1].astype(int),
        worst[:, 2].astype(int),
        worst[:, 3],
        list(d.classes),
        f"{title}: most confidently wrong test images",
        path,
    )


def collect(results, logger: MlflowTrialLogger, max_epochs: int, cells=None):
    """ResultGrid -> (trials DataFrame, epochs DataFrame, confusion matrices by trial id)."""
    by_path = {v: k for k, v in logger.trial_paths.items()}
    rows, epoch_frames, confusions = [], [], {}
    for res in results:
        last = res.metrics or {}
        tid = last.get("trial_id") or by_path.get(res.path, Path(res.path).name)
        df = res.metrics_dataframe
        df = df if df is not None and len(df) else pd.DataFrame(columns=list(EPOCH_METRICS))
        # A trial restarted from an older checkpoint re-reports epochs; MLflow keeps the
        # first report of each (the logger skips the rest), and so does the table.
        df = df.drop_duplicates("epoch", keep="first").reset_index(drop=True)
        cfg = resolve_config(res.config, cells)
        run_id = logger.run_ids.get(tid)
        epochs_run = int(df["epoch"].max()) if len(df) else 0
        status = "ERROR" if res.error else "TERMINATED"
        if "test_confusion" in last:
            confusions[tid] = json.loads(last["test_confusion"])
        rows.append(
            {
                "trial_id": tid,
                "label": cfg.get("label", ""),
                "dataset": cfg.get("dataset"),
                "model": cfg["model"],
                "optimizer": cfg["optimizer"],
                "lr": float(cfg["lr"]),
                "momentum": float(cfg.get("momentum", 0.0)),
                "batch_size": int(cfg["batch_size"]),
                "image_size": int(cfg["image_size"]),
                "max_epochs": int(cfg.get("epochs", max_epochs)),
                "augment": cfg.get("augment", "none"),
                "train_rule": cfg.get("train_rule", "epoch"),
                "seed": int(cfg["seed"]),
                "status": status,
                "epochs_run": epochs_run,
                # stopped by ASHA: ended before its epochs without a stopping rule firing
                "stopped_early": bool(
                    status == "TERMINATED"
                    and epochs_run < int(cfg.get("epochs", max_epochs))
                    and not last.get("stopped_by_rule")
                ),
                **{k: last.get(k, np.nan) for k in TEST_METRICS},
                "test_per_class_acc": last.get("test_per_class_acc"),
                "weights_source": last.get("weights_source"),
                "stopped_by_rule": last.get("stopped_by_rule") or None,
                "rule_saves": last.get("rule_saves", np.nan),
                "test_worst": last.get("test_worst"),
                "final_val_acc": float(df["val_acc"].iloc[-1]) if len(df) else np.nan,
                "final_train_acc": float(df["train_acc"].iloc[-1]) if len(df) else np.nan,
                "test_evaluated_by": "trial" if "test_acc" in last else None,
                "wall_s": float(last.get("time_total_s", np.nan)),
                "images_per_s": float(df["images_per_s"].median()) if len(df) else np.nan,
                "mlflow_run_id": run_id,
                # the Ray node of the trial's last report (a trial restarted after its
                # node died moves); node_ip alone cannot tell two nodes of one host apart
                "node_id": last.get("node_id"),
                "node_ip": last.get("node_ip"),
                "error": str(res.error)[:500] if res.error else None,
                "_checkpoint": res.checkpoint,
                "_config": cfg,
            }
        )
        if len(df):
            e = df[[c for c in EPOCH_METRICS if c in df]].copy()
            e["time_this_iter_s"] = df.get("time_this_iter_s")
            e.insert(0, "trial_id", tid)
            e.insert(1, "mlflow_run_id", run_id)
            e.insert(2, "model", cfg["model"])
            e.insert(3, "optimizer", cfg["optimizer"])
            e.insert(4, "config_lr", float(cfg["lr"]))
            epoch_frames.append(e)
    trials = pd.DataFrame(rows)
    for col in TEST_METRICS:
        trials[col] = pd.to_numeric(trials[col], errors="coerce")
    epochs_df = (
        pd.concat(epoch_frames, ignore_index=True)
        if epoch_frames
        else pd.DataFrame(columns=["trial_id", *EPOCH_METRICS])
    )
    epochs_df["epoch"] = epochs_df["epoch"].astype("int64")
    return trials, epochs_df, confusions


DECISION_COLUMNS = ["trial_id", "rung", "val_acc", "cutoff", "records", "decision", "time_utc"]


def asha_decisions(scheduler: ResumableASHA, trials: pd.DataFrame) -> pd.DataFrame:
    """ASHA's rung judgements, one row each, with the trial's config beside them so a
    reader can see which lr or model was cut where (``cutoff`` NaN: an empty rung)."""
    d = pd.DataFrame(scheduler.decisions(), columns=DECISION_COLUMNS)
    d["cutoff"] = pd.to_numeric(d["cutoff"], errors="coerce").astype("float64")
    d = d.astype({"rung": "int64", "val_acc": "float64", "records": "int64"})
    keys = [c for c in ("trial_id", "label", "model", "optimizer", "lr") if c in trials]
    return d.merge(trials[keys], on="trial_id", how="left")[[*keys, *DECISION_COLUMNS[1:]]]


def log_trial_artifacts(
    logger,
    trials: pd.DataFrame,
    epochs_df: pd.DataFrame,
    confusions: dict,
    data: dict[str, DataSplits],
) -> None:
    """Confusion matrix and learning curves per trial, plus final tags and test metrics."""
    for row in trials.itertuples():
        if not row.mlflow_run_id:
            continue
        d = data[row.dataset]
        title = row.label or f"{row.model} / {row.optimizer} / lr {row.lr:g}"
        with tempfile.TemporaryDirectory() as tmp:
            arts = []
            ep = epochs_df[epochs_df["trial_id"] == row.trial_id]
            if len(ep):
                arts.append(plots.learning_curves_png(ep, title, Path(tmp) / "learning_curves.png"))
            if row.trial_id in confusions:
                arts.append(
                    plots.confusion_matrix_png(
                        np.array(confusions[row.trial_id]),
                        list(d.classes),
                        f"{title}: test confusion (acc {100 * row.test_acc:.2f} %)",
                        Path(tmp) / "confusion_matrix.png",
                    )
                )
            if isinstance(row.test_worst, str):
                arts.append(worst_png(row._asdict(), d, title, Path(tmp) / "worst_images.png"))
            metrics = (
                {k: getattr(row, k) for k in TEST_METRICS if pd.notna(getattr(row, k))}
                if row.test_evaluated_by == "sweep"
                else {}
            )
            if isinstance(row.test_per_class_acc, str):  # per-class accuracy, readable names
                per_class = json.loads(row.test_per_class_acc)
                metrics |= {
                    f"test_acc_class_{c}": v
                    for c, v in zip(d.classes, per_class, strict=True)
                    if v is not None
                }
            logger.log_final(
                row.mlflow_run_id,
                metrics,
                int(row.epochs_run),
                {
                    "status": row.status,
                    "stopped_early": row.stopped_early,
                    "epochs_run": row.epochs_run,
                    "test_evaluated_by": row.test_evaluated_by,
                    "weights_source": row.weights_source,
                },
                arts,
            )


def write_results(
    out: Path,
    trials: pd.DataFrame,
    epochs_df: pd.DataFrame,
    tables: dict[str, pd.DataFrame],
    prov: dict,
    figures: list[Path],
    extra: dict[str, pd.DataFrame] | None = None,
) -> list[Path]:
    """Every table as Parquet (+ Markdown for the paper tables), each written atomically,
    first into the run's own folder (``<sweep>/runs/<run name>``), then published as one
    set to ``<sweep>/`` under a lock, so two sweeps finishing at once never leave a mix of
    their tables there. Returns the run folder's files."""
    sweep_dir, out = out, run_folder(out, prov["run_name"])
    written = []
    for name, df in {"trials": trials, "epochs": epochs_df, **(extra or {}), **tables}.items():
        path = out / f"{name}.parquet"
        write_parquet(df, path, prov)
        written.append(path)
    for name, df in tables.items():
        notes = df.attrs.get("notes", [])
        md = [f"# {name} — {prov['sweep']} (budget `{prov['budget']}`)\n"]
        md += [f"{n}\n" for n in notes]
        md += [to_markdown(df), "\n", provenance_md(prov)]
        path = out / f"{name}.md"
        write_text("\n".join(md), path)
        written.append(path)
    path = out / "provenance.json"
    write_text(json.dumps(prov, indent=1, default=str) + "\n", path)
    written.append(path)
    for fig in figures:
        target = out / fig.name
        copy_file(fig, target)
        written.append(target)
    publish(out, sweep_dir)
    return written
