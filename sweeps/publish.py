"""A finished sweep's tables, figures and provenance: written into the run's own folder,
published as one set to ``results/<sweep>/``, logged to the MLflow parent run, and the
report rendered from them."""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sweeps import compare
from sweeps.asha import ResumableASHA, decisions_table
from sweeps.compare import notes_of
from sweeps.finish import best_trial_figures
from sweeps.importance import importance_metrics, importance_table
from sweeps.plan import Plan
from sweeps.provenance import provenance_md
from sweeps.report import render, report_artifacts, terminal_summary, verdicts
from sweeps.results import copy_file, publish, run_folder, to_markdown, write_parquet, write_text
from sweeps.tracking import MlflowTrialLogger
from sweeps.trials import best_by_validation


@dataclass(frozen=True)
class Published:
    sweep_dir: Path  # results/<sweep>
    trials: int
    errored: int
    stopped_early: int
    wall_s: float
    unlogged: int  # MLflow calls the server never took
    spooled: Path  # where those wait for `python -m sweeps.tracking replay`


def publish_results(
    plan: Plan,
    trials: pd.DataFrame,
    epochs: pd.DataFrame,
    scheduler,
    confusions: dict,
    data: dict,
    prov: dict,
    logger: MlflowTrialLogger,
    started: float,
) -> Published:
    """Paper tables, results and report to disk and to the MLflow parent run, which is
    then closed; MLflow calls it cannot take now are spooled for a later replay."""
    tables = plan.sweep.make_tables(trials)
    extra = (
        {"asha_decisions": decisions_table(scheduler, trials)}
        if isinstance(scheduler, ResumableASHA)
        else {}
    )
    extra["importance"] = importance_table(trials)
    n_err = int((trials["status"] == "ERROR").sum())
    prov |= {
        "wall_s": round(time.time() - started, 1),
        "mlflow_parent_run_id": logger.parent_run_id,
        "mlflow_experiment_id": logger.experiment_id,
        "trials": len(trials),
        "trials_errored": n_err,
    }
    parent = logger.parent_run_id
    with tempfile.TemporaryDirectory() as tmp:
        figures = best_trial_figures(trials, confusions, data, Path(tmp))
        for path in write_results(plan.results_dir, trials, epochs, tables, prov, figures, extra):
            logger.submit("artifact", run=parent, path=str(path))
        for path, folder in render_report(plan.results_dir):
            logger.submit("artifact", run=parent, path=str(path), artifact_path=folder)
        log_best(logger, trials)
        log_verdicts(logger, tables)
        log_importance(logger, extra["importance"])
        logger.submit("terminate", run=parent, status="FAILED" if n_err else "FINISHED")
        # artifacts live in tmp: wait for MLflow here, then spool what is still unlogged
        unlogged = logger.flush(wait_s=plan.mlflow_wait_s)
        spooled = logger.spool(plan.state_dir / "mlflow_pending")
        logger.close()
    return Published(
        plan.results_dir,
        len(trials),
        n_err,
        int(trials["stopped_early"].sum()),
        prov["wall_s"],
        unlogged,
        spooled,
    )


def log_best(logger: MlflowTrialLogger, trials: pd.DataFrame) -> None:
    """The parent run's summary: the best trial by validation and its test accuracy."""
    # all trials errored before validating: the summary says so with NaN
    if "split" in trials:  # a leak-free twin is ranked on other data: not in the summary
        trials = trials[trials["split"].isna()]
    best = best_by_validation(trials) if trials["best_val_acc"].notna().any() else trials.iloc[0]
    now = int(time.time() * 1000)
    summary = [["best_val_acc", float(best["best_val_acc"]), now, 0]]
    if pd.notna(best["test_acc"]):
        summary.append(["best_trial_test_acc", float(best["test_acc"]), now, 0])
    logger.submit(
        "log", run=logger.parent_run_id, metrics=summary, tags=[["best_trial", best["trial_id"]]]
    )


def log_importance(logger: MlflowTrialLogger, table: pd.DataFrame) -> None:
    """The parent run's hyperparameter importances (``importance.parquet``) as metrics; its
    figures come with the report."""
    if table.empty:
        return
    now = int(time.time() * 1000)
    metrics = [[k, v, now, 0] for k, v in importance_metrics(table).items()]
    logger.submit("log", run=logger.parent_run_id, metrics=metrics)


def log_verdicts(logger: MlflowTrialLogger, tables: dict[str, pd.DataFrame]) -> None:
    """The parent run's verdict counts over every published cell (metrics cells_*, a
    sentence in the tag ``verdicts``), so the MLflow UI can sort sweeps by them."""
    contracts = {
        name: compare.Comparison.from_dict(json.loads(raw))
        for name, df in tables.items()
        if (raw := df.attrs.get(compare.METADATA_ATTR, {}).get(compare.COMPARISON_KEY))
    }
    v = verdicts(tables, contracts)
    if v.empty:
        return
    now = int(time.time() * 1000)
    count = v["verdict"].value_counts()
    metrics = [[f"cells_{k}", float(count.get(k, 0)), now, 0] for k in compare.VERDICTS]
    metrics.append(["cells_published", float(len(v)), now, 0])
    tags = [["verdicts", compare.verdict_sentence(v)]]
    logger.submit("log", run=logger.parent_run_id, metrics=metrics, tags=tags)


def render_report(sweep_dir: Path) -> list[tuple[Path, str | None]]:
    """The report (Markdown, HTML, figures) from the tables just published, as files and
    their MLflow artifact folders; a report that fails to render is a warning, never a
    failed sweep (the tables are already written)."""
    try:
        return report_artifacts(render(sweep_dir))
    except Exception as exc:
        print(f"warning: the report could not be rendered ({type(exc).__name__}: {exc})")
        return []


def summary_text(sweep_dir: Path) -> str:
    """The end of the sweep's output (see report.terminal_summary); the tables are
    already written, so a summary that fails is a warning, never a failed sweep."""
    try:
        return terminal_summary(sweep_dir)
    except Exception as exc:
        return f"warning: no summary ({type(exc).__name__}: {exc}); the tables are in {sweep_dir}"


def paper_table_md(name: str, df: pd.DataFrame, prov: dict) -> str:
    """A paper table as Markdown: title, its notes, the table, its provenance."""
    md = [f"# {name} — {prov['sweep']} (budget `{prov['budget']}`)\n"]
    md += [f"{n}\n" for n in notes_of(df)]
    md += [to_markdown(df), "\n", provenance_md(prov)]
    return "\n".join(md)


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
        path = out / f"{name}.md"
        write_text(paper_table_md(name, df, prov), path)
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
