"""The sweep's report: ``results/<sweep>/report.md`` and a self-contained ``report.html``
beside it (figures in ``results/<sweep>/report/``), rendered from the Parquet tables in
``results/<sweep>/`` alone.

    python -m sweeps.report mnist_optimizers
    python -m sweeps.report mnist_optimizers --run-id <parent run id> --tracking-uri URI

Sections, in the order a reader asks: summary (what was swept, on what data and budget,
the winner per model/optimizer, the honest gap to the paper), each paper table (published
vs ours with deltas, as a figure and as the table), test-accuracy heat-maps, learning
curves of the best trials, ASHA's stopping decisions, provenance.

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

from sweeps import plots
from sweeps.doc import Doc, table_cells
from sweeps.results import (
    copy_file,
    load_provenance,
    load_results,
    provenance_md,
    publish_lock,
    write_text,
)

REPORT = "report"  # the figures' folder inside results/<sweep>/ and in the MLflow run
PAGES = ("report.md", "report.html")
NOT_PAPER = ("trials", "epochs", "asha_decisions")
# Columns that name a table's cell, most specific first; a table's cells are named by the
# shortest prefix of those it has that tells its rows apart.
ID_COLUMNS = ("network", "label", "model", "class", "dataset", "optimizer", "lr", "augment", "row")
LOWER_IS_BETTER = ("iqr", "loss", "error")  # a spread or an error: above the paper is worse
RAW_UNITS = ("params", "flops", "inference", "seconds", "time", "_px")
LONG_TABLE = 30  # rows above which a table is folded (<details>) and its cells drawn as Δ map
METRIC_LABELS = {
    "test_acc_pct": "test accuracy (%)",
    "test_acc": "test accuracy (%)",
    "val_acc": "validation accuracy (%)",
    "train_acc": "training accuracy (%)",
    "acc_pct": "per-class accuracy (%)",
    "without_aug_pct": "test accuracy without augmentation (%)",
    "accuracy": "accuracy (%)",
    "precision": "macro precision (%)",
    "sensitivity": "macro sensitivity (%)",
    "specificity": "macro specificity (%)",
    "f1": "macro F1 (%)",
    "params_m": "parameters (millions)",
    "gflops": "GFLOPs (multiply-adds)",
    "inference_s_per_1000": "inference (s per 1,000 images)",
}


class ReportError(Exception):
    """Something in the sweep folder keeps the report from being rendered; says what."""


def pct(x) -> str:
    """A fraction as a percentage with two decimals (a 2,000-image test split moves in
    steps of 0.05 pp); missing as '—'."""
    return "—" if x is None or pd.isna(x) else f"{100 * float(x):.2f}"


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
    if "max_epochs" not in t:
        t["max_epochs"] = int(t["epochs_run"].max())
    if "stopped_by_rule" not in t:  # before training rules, patience was the only one
        stopped = t.get("stopped_by_patience", pd.Series(False, index=t.index)).fillna(False)
        t["stopped_by_rule"] = np.where(stopped.astype(bool), "patience", None)
    for col, default in (("stopped_early", False), ("status", "TERMINATED")):
        if col not in t:
            t[col] = default
    return t


def trial_name(r) -> str:
    return r["label"] or f"{r['model']} / {r['optimizer']} / lr {r['lr']:g}"


def stop_reason(r) -> str:
    if r["status"] == "ERROR":
        return "error"
    if bool(r["stopped_early"]):
        return "stopped by ASHA"
    rule = r.get("stopped_by_rule")
    if isinstance(rule, str) and rule:
        return f"stopped by rule ({rule})"
    if r["epochs_run"] >= r["max_epochs"]:
        return "finished"
    return "ended early (reason not recorded)"


# ----------------------------------------------------------------- published vs ours


def id_columns(df: pd.DataFrame) -> list[str]:
    present = [c for c in ID_COLUMNS if c in df]
    for n in range(1, len(present) + 1):
        if not df.duplicated(present[:n]).any():
            return present[:n]
    return present


def metric_kind(m: str, values: np.ndarray) -> str:
    """'raw' (own units: params, GFLOPs, seconds), 'fraction' (an *_acc in [0, 1]) or
    'pct' (percent; its difference is in percentage points)."""
    if any(u in f"_{m}" for u in RAW_UNITS):
        return "raw"
    finite = values[np.isfinite(values)]
    if m.endswith("acc") and finite.size and np.abs(finite).max() <= 1.0:
        return "fraction"
    return "pct"


def metric_label(m: str, kind: str) -> str:
    if m in METRIC_LABELS:
        return METRIC_LABELS[m]
    return m.removesuffix("_pct").replace("_", " ") + (" (%)" if kind != "raw" else "")


def paired_cells(df: pd.DataFrame) -> pd.DataFrame:
    """Every (table row, metric) with both a published and an ours value, long format.

    ``published_<m>`` pairs with ``ours_<m>``; without that, with the first
    ``ours_<m>_*`` (e.g. ``ours_gflops_224px``); and also with every ``ours_<x>_<m>``
    (e.g. ``ours_sgd_test_acc_pct`` for a paper row that names no optimizer). Columns:
    panel, row, published, ours, diff (pp, or the ratio ours/published for raw units),
    delta (text), worse (True/False, None where lower is not worse), kind.
    """
    ids = id_columns(df)
    ours_cols = [c for c in df.columns if c.startswith("ours_")]
    out = []
    for pub in [c for c in df.columns if c.startswith("published_")]:
        m = pub.removeprefix("published_")
        prefixed = [o for o in ours_cols if o.startswith(f"ours_{m}_")]
        matches = [f"ours_{m}"] if f"ours_{m}" in df else prefixed[:1]
        matches += [o for o in ours_cols if o.endswith(f"_{m}") and o not in matches]
        if not matches:
            continue
        vals = df[[pub, *matches]].apply(pd.to_numeric, errors="coerce").to_numpy(float)
        kind = metric_kind(m, vals)
        scale = 100.0 if kind == "fraction" else 1.0
        for o in matches:
            variant = o.removeprefix("ours_").replace(m, "").strip("_").replace("_", " ")
            for _, r in df.iterrows():
                p, v = pd.to_numeric(r[pub], errors="coerce"), pd.to_numeric(r[o], errors="coerce")
                if pd.isna(p) or pd.isna(v):
                    continue
                name = " / ".join(
                    f"lr {r[c]:g}" if c == "lr" and isinstance(r[c], float) else str(r[c])
                    for c in ids
                )
                name += f" (ours {variant})" if variant else ""
                if kind == "raw":
                    diff = v / p if p else np.nan
                    delta, worse = f"×{diff:.2f}", None
                else:
                    diff = scale * (v - p)
                    lower_better = any(w in m for w in LOWER_IS_BETTER)
                    delta, worse = f"{diff:+.1f} pp", bool(diff > 0 if lower_better else diff < 0)
                out.append(
                    {
                        "panel": metric_label(m, kind),
                        "row": name,
                        "published": scale * p,
                        "ours": scale * v,
                        "diff": diff,
                        "delta": delta,
                        "worse": worse,
                        "kind": kind,
                        "id0": str(r[ids[0]]) if ids else "",
                        "id1": str(r[ids[1]]) if len(ids) > 1 else "",
                    }
                )
    return pd.DataFrame(out)


def gap_sentence(cells: pd.DataFrame) -> list[str]:
    """Per metric: how many cells, how many below the paper, median and range of Δ."""
    lines = []
    for panel, c in cells.groupby("panel", sort=False):
        d = c["diff"].to_numpy(float)
        n = f"{panel}: {len(c)} cell{'s' * (len(c) > 1)}"
        if c["kind"].iloc[0] == "raw":
            lines.append(
                f"{n}; ours / published median ×{np.nanmedian(d):.2f} "
                f"(×{np.nanmin(d):.2f} to ×{np.nanmax(d):.2f})"
            )
        else:
            lines.append(
                f"{n}; ours below published in {int((d < 0).sum())}; median Δ "
                f"{np.nanmedian(d):+.1f} pp ({np.nanmin(d):+.1f} to {np.nanmax(d):+.1f})"
            )
    return lines


def headline(cells: pd.DataFrame) -> pd.DataFrame:
    """The cells of a table's headline metric: test accuracy, else accuracy, else the
    median, else its first percentage (raw units are no 'gap')."""
    pct_cells = cells[cells["kind"] != "raw"]
    panels = list(dict.fromkeys(pct_cells["panel"]))
    for want in ("test accuracy", "accuracy", "median"):
        hit = [p for p in panels if p == f"{want} (%)"] + [p for p in panels if p.startswith(want)]
        if hit:
            return pct_cells[pct_cells["panel"] == hit[0]]
    return pct_cells[pct_cells["panel"] == panels[0]] if panels else pct_cells


def paper_table_section(
    doc: Doc, name: str, df: pd.DataFrame, folder: Path, title: str, seen: set[str]
) -> None:
    """Notes (each said once per report), Δ summary, figure, then the table itself."""
    doc.h(3, f"{name}")
    for note in map(str, df.attrs.get("notes", [])):
        if note not in seen:
            doc.p(note)
            seen.add(note)
    cells = paired_cells(df)
    if len(cells):
        doc.ul(gap_sentence(cells))
        long = cells.groupby("panel").size().max() > LONG_TABLE and cells["id1"].ne("").all()
        if long:  # e.g. per-class accuracy: a Δ map reads better than 200 dumbbells
            for i, (panel, c) in enumerate(cells.groupby("panel", sort=False)):
                pivot = c.pivot_table(index="id0", columns="id1", values="diff", sort=False)
                ids = id_columns(df)
                pivot.index.name, pivot.columns.name = ids[0], ids[1]
                fig = f"{name}_delta{'_' + str(i) if i else ''}.png"
                unit = "ours / published" if c["kind"].iloc[0] == "raw" else "pp"
                plots.delta_heatmap_png(
                    pivot, f"{title} {name}: ours − published, {panel}", folder / fig, f"Δ ({unit})"
                )
                doc.img(fig, f"{name}: ours minus published per cell, {panel}")
        else:
            fig = f"{name}_published_vs_ours.png"
            plots.published_vs_ours_png(
                cells, f"{title} {name}: published (open) vs ours (filled)", folder / fig
            )
            doc.img(fig, f"{name}: published vs ours per cell")
    else:
        doc.p("This table has no published/ours column pairs.")
    header, rows = table_cells(df)
    doc.table(header, rows, fold=f"{name}: {len(rows)} rows" if len(rows) > LONG_TABLE else None)


# ----------------------------------------------------------------- the sections


def summary_section(doc: Doc, trials: pd.DataFrame, prov: dict, gaps: dict[str, list[str]]):
    b = prov.get("budget_settings") or {}
    asha = prov.get("asha") or {}
    done = trials[trials["status"] != "ERROR"]
    lrs = ", ".join(f"{x:g}" for x in sorted(trials["lr"].unique()))
    datasets = list(dict.fromkeys(trials["dataset"]))
    what = (
        f"Sweep `{prov.get('sweep', '?')}`, budget `{prov.get('budget', '?')}`"
        + (f" ({b['description']})" if b.get("description") else "")
        + f", search {prov.get('search', '?')}: {len(trials)} trials of "
        + (
            f"{trials['label'].nunique()} table rows"
            if trials["label"].ne("").any()
            else f"models {', '.join(dict.fromkeys(trials['model']))}"
        )
        + f" × optimizers {', '.join(dict.fromkeys(trials['optimizer']))} × lr {lrs}; "
        + f"{int((trials['status'] == 'ERROR').sum())} errored."
    )
    items = [what]
    items.append("Data: " + data_sentence(prov.get("data"), datasets) + ".")
    items += [w[:1].upper() + w[1:] + "." for w in split_warnings(prov.get("data"))]
    if b:
        items.append(
            f"Budget: {b.get('image_size', '?')} px inputs, batch {b.get('batch_size', '?')}, "
            f"up to {int(trials['max_epochs'].max())} epochs per trial; ASHA "
            + (
                f"on (grace {asha.get('grace_period')}, reduction factor "
                f"{asha.get('reduction_factor')}): {int(trials['stopped_early'].sum())} trials "
                "stopped early."
                if asha.get("enabled")
                else "off."
            )
        )
    items += best_lines(trials) + [gap_line(prov, gaps)]
    doc.h(2, "Summary")
    doc.ul(items)
    keys = (["dataset"] if len(datasets) > 1 else []) + ["model", "optimizer"]
    best = done.loc[done.groupby(keys, sort=False)["best_val_acc"].idxmax()]
    labelled = trials["label"].ne("").any()
    header = [*keys, *(["row"] if labelled else []), "lr", "epochs run", "val acc (%)"]
    header += ["test acc (%)"]
    rows = [
        [str(r[k]) for k in keys]
        + ([r["label"]] if labelled else [])
        + [f"{r['lr']:g}", str(int(r["epochs_run"])), pct(r["best_val_acc"]), pct(r["test_acc"])]
        for _, r in best.iterrows()
    ]
    doc.p(
        "The best trial per " + " / ".join(keys) + " by validation accuracy (its best epoch; "
        "the test accuracy is of the same weights):"
    )
    doc.table(header, rows)


def best_lines(trials: pd.DataFrame) -> list[str]:
    """The trial validation likes best, per dataset, with its test accuracy."""
    done = trials[trials["status"] != "ERROR"]
    several = trials["dataset"].nunique() > 1
    lines = []
    for ds, g in done.groupby("dataset", sort=False):
        best = g.loc[g["best_val_acc"].idxmax()]
        lines.append(
            f"Best by validation{f' on {ds}' if several else ''}: {trial_name(best)}, "
            f"val {pct(best['best_val_acc'])} %, test {pct(best['test_acc'])} %."
        )
    return lines


def gap_line(prov: dict, gaps: dict[str, list[str]]) -> str:
    """How far from the paper, and why: the budget's own reason, then the numbers."""
    gap = (prov.get("budget_settings") or {}).get("expected_gap")
    return (
        "Gap to the paper: "
        + (f"this budget is not the paper's ({gap}), so " if gap else "")
        + "ours is expected to fall short; "
        + "; ".join(f"{name}: {lines[0]}" for name, lines in gaps.items() if lines)
        + "."
    )


MAX_TERMINAL_ROWS = 30  # a terminal's screen; a 200-cell per-class table goes to the report


def terminal_summary(sweep_dir: Path) -> str:
    """What a sweep prints at its end, to fit a terminal: the first paper table as
    published-vs-ours lines of its headline metric, the best trial, the gap to the paper
    and why, and where the full tables and the report are."""
    tables, prov = load(sweep_dir)
    lines, gaps = [], {}
    for name in paper_tables(tables):
        cells = paired_cells(tables[name])
        cells = headline(cells) if len(cells) else cells
        gaps[name] = gap_sentence(cells) if len(cells) else []
        if lines or not len(cells):  # the first table with a percentage to compare
            continue
        lines.append(f"{name}: {cells['panel'].iloc[0]}, published vs ours (Δ = ours − published)")
        w = max(map(len, cells["row"]))
        lines += [
            f"  {r.row:<{w}}  paper {r.published:6.2f}  ours {r.ours:6.2f}  Δ {r.delta}"
            for r in cells.head(MAX_TERMINAL_ROWS).itertuples()
        ]
        more = len(cells) - MAX_TERMINAL_ROWS
        lines.append(
            (f"  ... {more} more rows; " if more > 0 else "  (")
            + f"every row and column: {sweep_dir / name}.md"
            + ("" if more > 0 else ")")
        )
    lines += best_lines(tables["trials"]) + [gap_line(prov, gaps)]
    lines.append(f"Report: {sweep_dir / 'report.md'} (and report.html, figures in report/)")
    return "\n".join(lines)


def per_dataset(data, name: str = "?") -> dict[str, dict]:
    """Provenance's data record as {dataset: info}; a one-dataset sweep's record is flat
    (its info at the top, named ``name`` when it has no ``name`` of its own)."""
    if not isinstance(data, dict):
        return {}
    one = {data.get("name", name): data} if "sha256" in data else data
    return {k: d for k, d in one.items() if isinstance(d, dict)}


def data_sentence(data, datasets: list[str]) -> str:
    if not isinstance(data, dict) or not data:
        return ", ".join(datasets) or "not recorded"
    parts = []
    for name, d in per_dataset(data, datasets[0] if datasets else "?").items():
        n = [f"{d[k]:,} {k}" for k in ("train", "val", "test") if isinstance(d.get(k), int)]
        parts.append(f"{name} ({' / '.join(n)} images)" if n else str(name))
    return ", ".join(parts)


def split_warnings(data) -> list[str]:
    """The data info's ``split_warning`` of each dataset split by image from a pool."""
    infos = per_dataset(data).values()
    return [d["split_warning"] for d in infos if isinstance(d.get("split_warning"), str)]


def heatmap_section(doc: Doc, trials: pd.DataFrame, folder: Path, title: str) -> None:
    """Test accuracy per cell: model/optimizer x lr per dataset for grids, model x dataset
    for table rows that name one model per dataset; bars where a grid has one column."""
    doc.h(2, "Test accuracy")
    t = trials[trials["test_acc"].notna()].assign(test_acc_pct=lambda d: 100 * d["test_acc"])
    if t.empty:
        doc.p("No trial has a test accuracy.")
        return
    datasets = list(dict.fromkeys(t["dataset"]))
    models = list(dict.fromkeys(t["model"]))
    figs = []
    if t["label"].ne("").any():
        if len(datasets) > 1 and len(models) > 1 and not t.duplicated(["model", "dataset"]).any():
            figs.append(
                (
                    "heatmap_test_acc.png",
                    "model × dataset",
                    dict(index=["model"], columns="dataset", rows=[(m,) for m in models]),
                )
            )
        else:
            path = folder / "test_acc_bars.png"
            plots.accuracy_bars_png(
                list(t["label"]),
                list(t["test_acc_pct"]),
                list(t["dataset"]),
                f"{title}: test accuracy per table row",
                path,
            )
            doc.img(path.name, "test accuracy per table row")
            return
    else:
        for ds in datasets:
            g = t[t["dataset"] == ds]
            suffix = f"_{ds}" if len(datasets) > 1 else ""
            opts = list(dict.fromkeys(g["optimizer"]))
            rows = [(m, o) for m in dict.fromkeys(g["model"]) for o in opts]
            if g["lr"].nunique() > 1:
                figs.append((f"heatmap_test_acc{suffix}.png", ds, dict(rows=rows)))
            else:
                path = folder / f"test_acc_bars{suffix}.png"
                names = [f"{r.model} / {r.optimizer} / lr {r.lr:g}" for r in g.itertuples()]
                plots.accuracy_bars_png(
                    names,
                    list(g["test_acc_pct"]),
                    list(g["dataset"]),
                    f"{title}: test accuracy" + (f" on {ds}" if suffix else ""),
                    path,
                )
                doc.img(path.name, f"test accuracy {ds}")
    for fname, what, axes in figs:
        sub = t if what == "model × dataset" else t[t["dataset"] == what]
        on = f" on {what}" if len(datasets) > 1 and what != "model × dataset" else ""
        plots.heatmap_png(
            sub,
            "test_acc_pct",
            f"{title}: test accuracy (%){on}",
            folder / fname,
            cbar_label="test accuracy (%)",
            vmin=0,
            vmax=100,
            **axes,
        )
        doc.img(fname, f"test accuracy heat-map{on}")


def curves_section(doc: Doc, trials: pd.DataFrame, epochs: pd.DataFrame, folder: Path, title):
    doc.h(2, "Learning curves of the best trials")
    doc.p(
        "Per model, the trial with the best validation accuracy; validation accuracy, "
        "and training (solid) and validation (dashed) loss, by epoch."
    )
    done = trials[(trials["status"] != "ERROR") & trials["trial_id"].isin(epochs["trial_id"])]
    datasets = list(dict.fromkeys(done["dataset"]))
    for ds in datasets:
        g = done[done["dataset"] == ds]
        best = g.loc[g.groupby("model", sort=False)["best_val_acc"].idxmax()]
        best = best.sort_values("best_val_acc", ascending=False)
        names = {
            r["trial_id"]: f"{trial_name(r)}: val {pct(r['best_val_acc'])} %, "
            f"test {pct(r['test_acc'])} %"
            for _, r in best.iterrows()
        }
        suffix = f"_{ds}" if len(datasets) > 1 else ""
        fname = f"learning_curves{suffix}.png"
        on = f" on {ds}" if suffix else ""
        plots.curves_png(epochs, names, f"{title}: best trial per model{on}", folder / fname)
        doc.img(fname, f"learning curves of the best trials{on}")


def asha_rungs(prov: dict, max_t: int) -> list[int]:
    """Ray's ASHA milestones below max_t: grace_period x reduction_factor^k."""
    a = prov.get("asha") or {}
    grace, rf = a.get("grace_period") or 1, a.get("reduction_factor") or 3
    rungs, r = [], float(grace)
    while r < max_t and rf > 1:
        rungs.append(int(r))
        r *= rf
    return rungs


def late_arrivals(trials, epochs, outcome: dict, rungs: list[int]) -> list[str]:
    """Per rung: trials that went on although they scored below a trial ASHA stopped there
    (ASHA judges each arrival against the records it finds, so early ones meet a lenient
    or empty rung)."""
    at = epochs.pivot_table(index="trial_id", columns="epoch", values="val_acc")
    lines = []
    for r in rungs:
        if r not in at:
            continue
        ran = trials.set_index("trial_id")["epochs_run"]
        stopped = [t for t, o in outcome.items() if o == "stopped by ASHA" and ran.get(t) == r]
        went_on = [t for t in at.index if ran.get(t, 0) > r]
        if not stopped or not went_on:
            continue
        best_stopped = at.loc[stopped, r].max()
        below = [t for t in went_on if at.at[t, r] < best_stopped]
        lines.append(
            f"rung {r}: {len(stopped)} stopped, {len(went_on)} went on; "
            + (
                f"{len(below)} of those that went on scored below the best stopped trial "
                f"({pct(best_stopped)} %): ASHA judges each trial against the values the rung "
                "holds when it arrives, so early arrivals meet an empty or lenient rung"
                if below
                else "every trial that went on scored above every stopped one"
            )
        )
    return lines


def asha_section(doc, tables: dict, prov: dict, folder: Path, title: str) -> None:
    trials, epochs = tables["trials"], tables["epochs"]
    decisions = tables.get("asha_decisions")
    a = prov.get("asha") or {}
    doc.h(2, "ASHA's stopping decisions")
    run, most = int(trials["epochs_run"].sum()), int(trials["max_epochs"].sum())
    outcome = {r["trial_id"]: stop_reason(r) for _, r in trials.iterrows()}
    if decisions is not None and len(decisions):
        decisions = decisions.sort_values(
            ["rung", "time_utc"] if "time_utc" in decisions else "rung"
        )
        stops = decisions[decisions["decision"] == "stop"].drop_duplicates("trial_id")
        for tid in stops["trial_id"]:
            if outcome.get(tid) in ("finished", "ended early (reason not recorded)"):
                outcome[tid] = "stopped by ASHA"
    n_asha = sum(v == "stopped by ASHA" for v in outcome.values())
    if not a.get("enabled") and not n_asha:
        doc.p(
            f"ASHA was off in this sweep: every trial ran its epochs or stopped by its own "
            f"rule ({run} of {most} epochs run)."
        )
    else:
        doc.p(
            f"ASHA on `{a.get('metric', 'val_acc')}` (time attribute "
            f"`{a.get('time_attr', 'epoch')}`, grace period {a.get('grace_period')}, reduction "
            f"factor {a.get('reduction_factor')}) stopped {n_asha} of {len(trials)} trials "
            f"early: {run} of the grid's {most} epochs were run ({100 * run / max(most, 1):.0f} %)."
            " At each rung (epoch milestone) a trial goes on only if its value is at least "
            "the cutoff, the (1 − 1/reduction factor) quantile of the values recorded at "
            "that rung so far: the top 1/reduction factor continue."
        )
        max_t = int(trials["max_epochs"].max())
        rungs = (
            sorted(int(r) for r in decisions["rung"].unique())
            if decisions is not None and len(decisions)
            else asha_rungs(prov, max_t)
        )
        cut = None
        if decisions is not None and len(decisions):
            cut = decisions[decisions["cutoff"].notna()][["rung", "cutoff"]]
        fname = "asha_decisions.png"
        plots.asha_png(
            epochs,
            outcome,
            rungs,
            cut,
            f"{title}: every trial's validation accuracy; X = stopped by ASHA",
            folder / fname,
        )
        doc.img(fname, "validation accuracy of every trial, ASHA stops marked")
        doc.ul(late_arrivals(trials, epochs, outcome, rungs)) if rungs else None
        if decisions is not None and len(decisions):
            rows = []
            for rung, g in decisions.groupby("rung"):
                c = g["cutoff"].dropna()
                rows.append(
                    [
                        str(int(rung)),
                        str(len(g)),
                        str(int((g["decision"] == "continue").sum())),
                        str(int((g["decision"] == "stop").sum())),
                        str(int(g["cutoff"].isna().sum())),
                        f"{pct(c.min())} – {pct(c.max())}" if len(c) else "—",
                    ]
                )
            doc.p(
                "Decisions per rung (a decision without a cutoff: the rung held too few "
                "records to judge, so the trial continued):"
            )
            doc.table(
                ["rung (epoch)", "decisions", "continue", "stop", "no cutoff", "cutoff range (%)"],
                rows,
            )
            flagged = trials.loc[trials["stopped_early"].astype(bool), "trial_id"]
            missing = sorted(set(flagged) - set(stops["trial_id"]))
            if missing:
                doc.p(
                    f"trials.parquet marks {', '.join(missing)} as stopped early, but "
                    "asha_decisions.parquet holds no stop decision for them."
                )
    last = epochs.sort_values("epoch").groupby("trial_id")["val_acc"].last()
    stop_at = {}
    if decisions is not None and len(decisions):
        stop_at = {r["trial_id"]: r for _, r in stops.iterrows()}
    header = [
        "trial",
        "config",
        "epochs run",
        "stopped by",
        "val acc at stop (%)",
        "best val acc (%)",
    ]
    if stop_at:
        header += ["ASHA rung", "cutoff (%)"]
    rows = []
    for _, r in trials.sort_values("trial_id").iterrows():
        row = [
            r["trial_id"],
            trial_name(r),
            f"{int(r['epochs_run'])} / {int(r['max_epochs'])}",
            outcome[r["trial_id"]],
            pct(last.get(r["trial_id"])),
            pct(r["best_val_acc"]),
        ]
        if stop_at:
            d = stop_at.get(r["trial_id"])
            row += [str(int(d["rung"])), pct(d["cutoff"])] if d is not None else ["—", "—"]
        rows.append(row)
    doc.p("Every trial, how it ended:")
    doc.table(header, rows, fold=f"{len(rows)} trials" if len(rows) > LONG_TABLE else None)


def provenance_section(doc: Doc, prov: dict) -> None:
    try:
        md = provenance_md(prov)
    except KeyError as exc:  # an older or hand-made provenance record
        md = f"## Provenance\n\n- (record lacks {exc}; keys: {', '.join(prov) or 'none'})\n"
    items = []
    for line in md.splitlines():
        if line.startswith("## "):
            doc.h(2, line[3:])
        elif line.startswith("- "):
            items.append(line[2:])
        elif line.strip():
            items.append(line.strip())
    for key, what in (
        ("run_name", "run name"),
        ("mlflow_experiment_id", "MLflow experiment"),
        ("mlflow_parent_run_id", "MLflow parent run"),
        ("tracking_uri", "tracking URI"),
        ("resources", "resources"),
    ):
        if prov.get(key) is not None:
            items.append(f"{what}: `{prov[key]}`" if key != "resources" else f"{what}: {prov[key]}")
    items.append(
        "the full record: `provenance.json` beside the tables, and each Parquet "
        "file's schema metadata (`cnnsweep.provenance`)"
    )
    doc.ul(items)


# ----------------------------------------------------------------- render and log


def paper_tables(tables: dict) -> list[str]:
    names = [n for n in tables if n not in NOT_PAPER]
    return sorted(names, key=lambda n: (not n.startswith("table"), n))


def render(sweep_dir: Path) -> Path:
    """Write ``<sweep_dir>/report.md``, ``report.html`` and the figures in ``report/``;
    returns the Markdown's path. Each file is written atomically, figures before the pages
    that show them, so a crash never leaves a page pointing at a missing figure."""
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
    out = sweep_dir / REPORT
    body = Doc()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        gaps, seen = {}, set()
        body.h(2, "Paper tables: published vs ours")
        body.p(
            "Δ = ours − published, in percentage points (pp) for percentages; for "
            "quantities in their own units (parameters, GFLOPs, seconds) the ratio "
            "ours / published. Each table's own columns follow its figure."
        )
        for name in paper_tables(tables):
            paper_table_section(body, name, tables[name], folder, title, seen)
            cells = paired_cells(tables[name])
            gaps[name] = gap_sentence(headline(cells)) if len(cells) else []
        heatmap_section(body, trials, folder, title)
        curves_section(body, trials, epochs, folder, title)
        asha_section(body, tables, prov, folder, title)
        provenance_section(body, prov)
        doc = Doc()
        doc.h(1, f"Report: {sweep}, budget `{prov.get('budget', '?')}`")
        summary_section(doc, trials, prov, gaps)
        doc.blocks += body.blocks
        figures = sorted(p.name for p in folder.glob("*.png"))
        for name in figures:
            copy_file(folder / name, out / name)
        write_text(doc.html(folder, f"Report: {sweep}"), sweep_dir / "report.html")
    write_text(doc.markdown(img_dir=f"{REPORT}/"), sweep_dir / "report.md")
    for old in out.glob("*.png"):  # figures of an earlier render that this one lacks
        if old.name not in figures:
            old.unlink(missing_ok=True)
    for page in PAGES:  # where pages were rendered before they moved up beside the tables
        (out / page).unlink(missing_ok=True)
    return sweep_dir / "report.md"


def report_artifacts(md: Path | str) -> list[tuple[Path, str | None]]:
    """The report's files with their MLflow artifact folder: the pages at the run's root,
    the figures under ``report/``, as on disk, so the Markdown's links work in both."""
    md = Path(md)
    pages = [(md.parent / page, None) for page in PAGES if (md.parent / page).is_file()]
    figures = sorted((md.parent / REPORT).glob("*.png"))
    return pages + [(png, REPORT) for png in figures]


def log_report(md: Path | str, run_id: str, tracking_uri: str) -> list[str]:
    """Log the report (pages and figures) to an MLflow run; returns the artifact paths."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    logged = []
    for path, folder in report_artifacts(md):
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
