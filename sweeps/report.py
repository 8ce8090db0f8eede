"""The sweep's report: ``results/<sweep>/report.md`` and a self-contained ``report.html``
beside it (figures in ``results/<sweep>/report/``), rendered from the Parquet tables in
``results/<sweep>/`` alone.

    python -m sweeps.report mnist_optimizers
    python -m sweeps.report mnist_optimizers --run-id <parent run id> --tracking-uri URI

Sections, in the order a reader asks: summary (what was swept, on what data and budget,
the winner per model/optimizer, the honest gap to the paper), each paper table (published
vs ours with deltas, as a figure and as the table), test-accuracy heat-maps, what
matters (hyperparameter importance, parallel coordinates), learning curves of the best
trials, ASHA's stopping decisions, provenance.

The pages are not part of a run's published set: they are rendered after each publish,
from the published tables and under the same lock (see :func:`render`). Image links are
relative (``report/<figure>.png``), so the Markdown renders on GitHub and among the
parent MLflow run's artifacts, which mirror this layout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from sweeps import compare
from sweeps.compare import Comparison
from sweeps.doc import Doc
from sweeps.importance import importance_section
from sweeps.provenance import load_provenance
from sweeps.report_sections import (
    HEATMAP,
    asha_section,
    best_lines,
    curves_section,
    gap_line,
    gap_sentence,
    headline,
    heatmap_section,
    paper_table_section,
    provenance_section,
    summary_section,
)
from sweeps.results import copy_file, load_results, publish_lock, write_text
from sweeps.settings import NOT_PAPER_TABLES
from sweeps.trials import data_keys

REPORT = "report"  # the figures' folder inside results/<sweep>/ and in the MLflow run
PAGES = ("report.md", "report.html")
MAX_TERMINAL_ROWS = 30  # a terminal's screen; a 200-cell per-class table goes to the report


class ReportError(Exception):
    """Something in the sweep folder keeps the report from being rendered; says what."""


# ----------------------------------------------------------------- reading the folder


def sweeps_in(results_dir: Path) -> list[str]:
    """Sweep folders under ``results_dir`` (those holding a trials.parquet)."""
    if not results_dir.is_dir():
        return []
    return sorted(p.parent.name for p in results_dir.glob("*/trials.parquet"))


def load(sweep_dir: Path) -> tuple[dict[str, pd.DataFrame], dict]:
    """The sweep's tables and provenance, or a :class:`ReportError` naming the bad file."""
    sweep_dir = Path(sweep_dir)
    if not (sweep_dir / "trials.parquet").is_file():
        known = sweeps_in(sweep_dir.parent)
        raise ReportError(
            f"no sweep {sweep_dir.name!r} in {sweep_dir.parent}: {sweep_dir / 'trials.parquet'} "
            f"does not exist; sweeps there: {', '.join(known) or 'none'}"
        )
    try:
        tables = load_results(sweep_dir.name, sweep_dir.parent)
    except RuntimeError as exc:  # a half-published set
        raise ReportError(str(exc)) from exc
    except Exception as exc:
        for f in sorted(sweep_dir.glob("*.parquet")):
            try:
                pq.read_table(f)
            except Exception as bad:
                raise ReportError(
                    f"{f} cannot be read as Parquet ({type(bad).__name__}: "
                    f"{str(bad).splitlines()[0][:200]}); restore it or rerun the sweep"
                ) from exc
        raise
    if "epochs" not in tables:
        raise ReportError(f"{sweep_dir / 'epochs.parquet'} does not exist; a sweep writes it")
    need = ["trial_id", "model", "optimizer", "lr", "epochs_run", "best_val_acc", "test_acc"]
    for name, cols in {"trials": need, "epochs": ["trial_id", "epoch", "val_acc"]}.items():
        missing = [c for c in cols if c not in tables[name]]
        if missing:
            raise ReportError(
                f"{sweep_dir / (name + '.parquet')} lacks column(s) {', '.join(missing)}"
            )
    prov = load_provenance(sweep_dir / "trials.parquet")
    if not prov and (sweep_dir / "provenance.json").is_file():
        prov = json.loads((sweep_dir / "provenance.json").read_text())
    tables["trials"] = normalised_trials(tables["trials"], prov)
    return tables, prov


def normalised_trials(trials: pd.DataFrame, prov: dict) -> pd.DataFrame:
    """Columns older tables lack, filled: label, dataset, max_epochs, stopped_by_rule."""
    t = trials.copy()
    data = prov.get("data") or {}
    if "label" not in t:
        t["label"] = ""
    t["label"] = t["label"].fillna("").astype(str)
    if "dataset" not in t:
        t["dataset"] = data.get("name", "") if isinstance(data, dict) else ""
    t["dataset"] = t["dataset"].fillna("").astype(str)
    t["dataset"] = data_keys(t)  # a leak-free twin's data is its own (dataset-split)
    if "max_epochs" not in t:
        t["max_epochs"] = int(t["epochs_run"].max())
    if "stopped_by_rule" not in t:  # such tables record one rule only: patience
        stopped = t.get("stopped_by_patience", pd.Series(False, index=t.index)).fillna(False)
        t["stopped_by_rule"] = np.where(stopped.astype(bool), "patience", None)
    for col, default in (("stopped_early", False), ("status", "TERMINATED")):
        if col not in t:
            t[col] = default
    return t


def paper_tables(tables: dict) -> list[str]:
    names = [n for n in tables if n not in NOT_PAPER_TABLES]
    return sorted(names, key=lambda n: (not n.startswith("table"), n))


def comparisons(sweep_dir: Path, tables: dict) -> dict[str, Comparison]:
    """Each paper table's published-vs-ours contract, from its Parquet metadata."""
    return {
        name: compare.read(Path(sweep_dir) / f"{name}.parquet", tables[name])
        for name in paper_tables(tables)
    }


def verdicts(tables: dict, contracts: dict[str, Comparison]) -> pd.DataFrame:
    """Every published cell of every paper table with its verdict (column ``table``)."""
    frames = [c.verdicts(tables[name]).assign(table=name) for name, c in contracts.items()]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=["table", "panel", "row", "verdict", "reason", "code"])
    return pd.concat(frames, ignore_index=True)


def verdict_lines(v: pd.DataFrame) -> list[str]:
    """The report's first lines: all tables' counts, then each table's."""
    lines = [f"Verdicts: {compare.verdict_sentence(v)}."]
    if v["table"].nunique() > 1:
        lines += [f"{t}: {compare.verdict_sentence(g)}." for t, g in v.groupby("table", sort=False)]
    return lines


def render(sweep_dir: Path) -> Path:
    """Write ``<sweep_dir>/report.md``, ``report.html`` and the figures in ``report/``
    (the test-accuracy heat-map also beside the tables); returns the Markdown's path. Each
    file is written atomically, figures before the pages that show them, so a crash never
    leaves a page pointing at a missing figure."""
    sweep_dir = Path(sweep_dir)
    if not (sweep_dir / "trials.parquet").is_file():
        load(sweep_dir)  # raises ReportError naming the sweeps there
    # Under the publish lock: a run that publishes while this renders would otherwise
    # leave a report describing the previous run's tables.
    with publish_lock(sweep_dir):
        return _render(sweep_dir)


def _render(sweep_dir: Path) -> Path:
    tables, prov = load(sweep_dir)
    trials, epochs = tables["trials"], tables["epochs"]
    sweep = prov.get("sweep", sweep_dir.name)
    title = f"{sweep} ({prov.get('budget', '?')})"
    body = Doc()
    contracts = comparisons(sweep_dir, tables)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        gaps = paper_section(body, tables, contracts, (folder, title))
        heatmap_section(body, trials, folder, title)
        importance_section(body, tables, folder, title)
        curves_section(body, trials, epochs, folder, title)
        asha_section(body, tables, prov, folder, title)
        provenance_section(body, prov)
        doc = Doc()
        doc.h(1, f"Report: {sweep}, budget `{prov.get('budget', '?')}`")
        doc.ul(verdict_lines(verdicts(tables, contracts)))
        summary_section(doc, trials, prov, gaps)
        doc.blocks += body.blocks
        figures = sorted(p.name for p in folder.glob("*.png"))
        write_figures(folder, figures, sweep_dir)
        write_text(doc.html(folder, f"Report: {sweep}"), sweep_dir / "report.html")
    write_text(doc.markdown(img_dir=f"{REPORT}/"), sweep_dir / "report.md")
    remove_stale(sweep_dir, figures)
    return sweep_dir / "report.md"


def paper_section(
    doc: Doc, tables: dict, contracts: dict[str, Comparison], where: tuple[Path, str]
) -> dict[str, list[str]]:
    """Every paper table, published vs ours; returns each table's headline gap lines."""
    gaps, seen = {}, set()
    doc.h(2, "Paper tables: published vs ours")
    doc.p(
        "Δ = ours − published, in percentage points (pp) for percentages; for "
        "quantities in their own units (parameters, GFLOPs, seconds) the ratio "
        "ours / published. Each table's own columns follow its figure."
    )
    for name, contract in contracts.items():
        paper_table_section(doc, name, tables[name], contract, (*where, seen))
        cells = contract.cells(tables[name])
        gaps[name] = gap_sentence(headline(cells, contract)) if len(cells) else []
    return gaps


def write_figures(folder: Path, figures: list[str], sweep_dir: Path) -> None:
    """The figures into ``report/``, and the test-accuracy heat-map also beside the tables
    (the sweep's one heat-map, logged at the MLflow run's root)."""
    for name in figures:
        copy_file(folder / name, sweep_dir / REPORT / name)
    if HEATMAP in figures:
        copy_file(folder / HEATMAP, sweep_dir / HEATMAP)


def remove_stale(sweep_dir: Path, figures: list[str]) -> None:
    """Files an earlier render wrote that this one did not: figures, a heat-map beside
    the tables (this sweep draws bars instead), pages inside ``report/`` (an older layout)."""
    for old in (sweep_dir / REPORT).glob("*.png"):
        if old.name not in figures:
            old.unlink(missing_ok=True)
    if HEATMAP not in figures:
        (sweep_dir / HEATMAP).unlink(missing_ok=True)
    for page in PAGES:
        (sweep_dir / REPORT / page).unlink(missing_ok=True)


def terminal_summary(sweep_dir: Path) -> str:
    """What a sweep prints at its end, to fit a terminal: the first paper table as
    published-vs-ours lines of its headline metric, the best trial, the gap to the paper
    and why, and where the full tables and the report are."""
    tables, prov = load(sweep_dir)
    contracts = comparisons(sweep_dir, tables)
    lines, gaps = [], {}
    for name, contract in contracts.items():
        cells = contract.cells(tables[name])
        cells = headline(cells, contract) if len(cells) else cells
        gaps[name] = gap_sentence(cells) if len(cells) else []
        if lines or not len(cells):  # the first table with a percentage to compare
            continue
        lines.append(f"{name}: {cells['panel'].iloc[0]}, published vs ours (Δ = ours − published)")
        w = max(map(len, cells["row"]))
        lines += [
            f"  {r.row:<{w}}  paper {r.published:6.2f}  ours {r.ours:6.2f}  Δ {r.delta}"
            + (f"  {r.verdict}" if isinstance(r.verdict, str) else "")
            for r in cells.head(MAX_TERMINAL_ROWS).itertuples()
        ]
        more = len(cells) - MAX_TERMINAL_ROWS
        lines.append(
            (f"  ... {more} more rows; " if more > 0 else "  (")
            + f"every row and column: {sweep_dir / name}.md"
            + ("" if more > 0 else ")")
        )
    lines = verdict_lines(verdicts(tables, contracts)) + lines
    lines += best_lines(tables["trials"]) + [gap_line(prov, gaps)]
    lines.append(f"Report: {sweep_dir / 'report.md'} (and report.html, figures in report/)")
    return "\n".join(lines)


def report_artifacts(md: Path | str) -> list[tuple[Path, str | None]]:
    """The report's files with their MLflow artifact folder: the pages and the heat-map at
    the run's root, the figures under ``report/``, as on disk, so the Markdown's links work
    in both."""
    md = Path(md)
    pages = [(md.parent / page, None) for page in (*PAGES, HEATMAP) if (md.parent / page).is_file()]
    figures = sorted((md.parent / REPORT).glob("*.png"))
    return pages + [(png, REPORT) for png in figures]


def log_report(md: Path | str, run_id: str, tracking_uri: str) -> list[str]:
    """Log the report (pages and figures) to an MLflow run; returns the artifact paths.
    The heat-map beside the tables is not logged again: the sweep logged it with them."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    logged = []
    for path, folder in report_artifacts(md):
        if path.name == HEATMAP and folder is None:
            continue
        client.log_artifact(run_id, str(path), artifact_path=folder)
        logged.append(f"{folder}/{path.name}" if folder else path.name)
    return logged


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sweeps.report",
        description="Render results/<sweep>/report.md and report.html (self-contained) "
        "from the sweep's Parquet tables, optionally logging them to an MLflow run.",
    )
    p.add_argument(
        "sweep", help="the sweep's folder name under --results-dir, e.g. mnist_optimizers"
    )
    p.add_argument(
        "--results-dir",
        default=os.environ.get("CNNSWEEP_RESULTS_DIR", "results"),
        help="folder holding <sweep>/ (default $CNNSWEEP_RESULTS_DIR or ./results)",
    )
    p.add_argument(
        "--run-id",
        help="MLflow run to log the report to (pages at the root, figures under report/; "
        "the sweep's parent run is provenance.json's mlflow_parent_run_id); default: do not log",
    )
    p.add_argument(
        "--tracking-uri",
        default=os.environ.get("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000"),
        help="MLflow server for --run-id (default $MLFLOW_TRACKING_URI or http://127.0.0.1:5000)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        md = render(Path(args.results_dir) / args.sweep)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"report: {md}\n        {md.with_suffix('.html')}")
    if args.run_id:
        try:
            logged = log_report(md, args.run_id, args.tracking_uri)
        except Exception as exc:
            print(
                f"error: could not log to MLflow run {args.run_id} at {args.tracking_uri}: "
                f"{str(exc).splitlines()[0][:300]}",
                file=sys.stderr,
            )
            return 1
        print(f"MLflow:  {len(logged)} artifacts logged to run {args.run_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
