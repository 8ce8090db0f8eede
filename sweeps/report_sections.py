"""The report's sections, each written into a :class:`~sweeps.doc.Doc` with its figures
drawn into a folder: summary, paper tables (published vs ours), test accuracy, learning
curves, ASHA's decisions, provenance. :mod:`sweeps.report` puts them in order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sweeps import plots
from sweeps.compare import Comparison
from sweeps.doc import Doc, table_cells
from sweeps.provenance import provenance_items
from sweeps.trials import best_by_validation, display_name, several_seeds
from trainables.schema import LABELS, METRIC

LONG_TABLE = 30  # rows above which a table is folded (<details>) and its cells drawn as Δ map
HEATMAP = "heatmap_test_acc.png"  # also placed beside the tables (the sweep's one heat-map)


def pct(x) -> str:
    """A fraction as a percentage with two decimals (a 2,000-image test split moves in
    steps of 0.05 pp); missing as '—'."""
    return "—" if x is None or pd.isna(x) else f"{100 * float(x):.2f}"


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


def gap_sentence(cells: pd.DataFrame) -> list[str]:
    """Per metric: how many cells, how many below the paper, median and range of Δ."""
    lines = []
    for panel, c in cells.groupby("panel", sort=False):
        d = c["diff"].to_numpy(float)
        n = f"{panel}: {len(c)} cell{'s' * (len(c) > 1)}"
        if c["unit"].iloc[0] == "raw":
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


def headline(cells: pd.DataFrame, comparison: Comparison) -> pd.DataFrame:
    """The cells of the metric the contract names as the table's headline, else of its
    first percentage (raw units are no 'gap')."""
    pct_cells = cells[cells["unit"] != "raw"] if len(cells) else cells
    if not len(pct_cells):
        return pct_cells
    panels = list(dict.fromkeys(pct_cells["panel"]))
    panel = comparison.headline if comparison.headline in panels else panels[0]
    return pct_cells[pct_cells["panel"] == panel]


def paper_table_section(
    doc: Doc,
    name: str,
    df: pd.DataFrame,
    comparison: Comparison,
    ctx: tuple[Path, str, set[str]],
) -> None:
    """Notes (each said once per report; ``ctx``: figure folder, title, notes said), Δ
    summary, figure, then the table itself."""
    folder, title, seen = ctx
    doc.h(3, f"{name}")
    for note in comparison.notes:
        if note not in seen:
            doc.p(note)
            seen.add(note)
    cells = comparison.cells(df)
    if len(cells):
        doc.ul(gap_sentence(cells))
        long = cells.groupby("panel").size().max() > LONG_TABLE and cells["id1"].ne("").all()
        if long:  # e.g. per-class accuracy: a Δ map reads better than 200 dumbbells
            delta_maps(doc, name, cells, comparison.row_ids(df), folder, title)
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


def delta_maps(
    doc: Doc, name: str, cells: pd.DataFrame, ids: list[str], folder: Path, title: str
) -> None:
    """One Δ heat-map per metric of a long table: first id column x second."""
    for i, (panel, c) in enumerate(cells.groupby("panel", sort=False)):
        pivot = c.pivot_table(index="id0", columns="id1", values="diff", sort=False)
        pivot.index.name, pivot.columns.name = ids[0], ids[1]
        fig = f"{name}_delta{'_' + str(i) if i else ''}.png"
        unit = "ours / published" if c["unit"].iloc[0] == "raw" else "pp"
        plots.delta_heatmap_png(
            pivot, f"{title} {name}: ours − published, {panel}", folder / fig, f"Δ ({unit})"
        )
        doc.img(fig, f"{name}: ours minus published per cell, {panel}")


# ----------------------------------------------------------------- summary


def summary_section(doc: Doc, trials: pd.DataFrame, prov: dict, gaps: dict[str, list[str]]):
    datasets = list(dict.fromkeys(trials["dataset"]))
    items = [what_line(trials, prov)]
    items.append("Data: " + data_sentence(prov.get("data"), datasets) + ".")
    items += [w[:1].upper() + w[1:] + "." for w in split_warnings(prov.get("data"))]
    if prov.get("budget_settings"):
        items.append(budget_line(trials, prov))
    items += best_lines(trials) + [gap_line(prov, gaps)]
    doc.h(2, "Summary")
    doc.ul(items)
    keys = (["dataset"] if len(datasets) > 1 else []) + ["model", "optimizer"]
    best = best_by_validation(trials[trials["status"] != "ERROR"], keys)
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


def what_line(trials: pd.DataFrame, prov: dict) -> str:
    """What was swept: the sweep, budget, search, trial count, grid axes, errors."""
    b = prov.get("budget_settings") or {}
    lrs = ", ".join(f"{x:g}" for x in sorted(trials["lr"].unique()))
    return (
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


def budget_line(trials: pd.DataFrame, prov: dict) -> str:
    b, asha = prov.get("budget_settings") or {}, prov.get("asha") or {}
    return (
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


def best_lines(trials: pd.DataFrame) -> list[str]:
    """The trial validation likes best, per dataset, with its test accuracy."""
    done = trials[trials["status"] != "ERROR"]
    several = trials["dataset"].nunique() > 1
    lines = []
    for ds, g in done.groupby("dataset", sort=False):
        best = best_by_validation(g)
        lines.append(
            f"Best by validation{f' on {ds}' if several else ''}: "
            f"{display_name(best, several_seeds(trials))}, "
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


# ----------------------------------------------------------------- test accuracy


def heatmap_section(doc: Doc, trials: pd.DataFrame, folder: Path, title: str) -> None:
    """Test accuracy per cell: model/optimizer x lr per dataset for grids, model x dataset
    for table rows that name one model per dataset; bars where a grid has one column."""
    doc.h(2, "Test accuracy")
    t = trials[trials["test_acc"].notna()].assign(test_acc_pct=lambda d: 100 * d["test_acc"])
    if t.empty:
        doc.p("No trial has a test accuracy.")
        return
    datasets = list(dict.fromkeys(t["dataset"]))
    if t["label"].ne("").any():
        figs = _row_heatmaps(doc, t, datasets, folder, title)
    else:
        figs = _grid_heatmaps(doc, t, datasets, folder, title)
    for fname, what, axes in figs:
        sub = t if what == "model × dataset" else t[t["dataset"] == what]
        on = f" on {what}" if len(datasets) > 1 and what != "model × dataset" else ""
        plots.heatmap_png(
            sub,
            "test_acc_pct",
            f"{title}: {LABELS['test_acc']}{on}",
            folder / fname,
            cbar_label=LABELS["test_acc"],
            vmin=0,
            vmax=100,
            **axes,
        )
        doc.img(fname, f"test accuracy heat-map{on}")


def _row_heatmaps(doc: Doc, t: pd.DataFrame, datasets: list[str], folder: Path, title: str):
    """Table rows: a model x dataset heat-map when each model has one row per dataset,
    else bars (drawn here; no heat-map to draw)."""
    models = list(dict.fromkeys(t["model"]))
    if len(datasets) > 1 and len(models) > 1 and not t.duplicated(["model", "dataset"]).any():
        rows = [(m,) for m in models]
        return [(HEATMAP, "model × dataset", dict(index=["model"], columns="dataset", rows=rows))]
    path = folder / "test_acc_bars.png"
    plots.accuracy_bars_png(
        list(t["label"]),
        list(t["test_acc_pct"]),
        list(t["dataset"]),
        f"{title}: test accuracy per table row",
        path,
    )
    doc.img(path.name, "test accuracy per table row")
    return []


def _grid_heatmaps(doc: Doc, t: pd.DataFrame, datasets: list[str], folder: Path, title: str):
    """Grids: per dataset, model/optimizer x lr, or bars where only one lr was tried."""
    figs = []
    for ds in datasets:
        g = t[t["dataset"] == ds]
        suffix = f"_{ds}" if len(datasets) > 1 else ""
        opts = list(dict.fromkeys(g["optimizer"]))
        rows = [(m, o) for m in dict.fromkeys(g["model"]) for o in opts]
        if g["lr"].nunique() > 1:
            figs.append((f"heatmap_test_acc{suffix}.png", ds, dict(rows=rows)))
            continue
        path = folder / f"test_acc_bars{suffix}.png"
        names = [display_name(r) for _, r in g.iterrows()]
        plots.accuracy_bars_png(
            names,
            list(g["test_acc_pct"]),
            list(g["dataset"]),
            f"{title}: test accuracy" + (f" on {ds}" if suffix else ""),
            path,
        )
        doc.img(path.name, f"test accuracy {ds}")
    return figs


# ----------------------------------------------------------------- learning curves


def curves_section(doc: Doc, trials: pd.DataFrame, epochs: pd.DataFrame, folder: Path, title):
    doc.h(2, "Learning curves of the best trials")
    doc.p(
        "Per model, the trial with the best validation accuracy; validation accuracy, "
        "and training (solid) and validation (dashed) loss, by epoch."
    )
    done = trials[(trials["status"] != "ERROR") & trials["trial_id"].isin(epochs["trial_id"])]
    datasets = list(dict.fromkeys(done["dataset"]))
    for ds in datasets:
        best = best_by_validation(done[done["dataset"] == ds], "model")
        best = best.sort_values("best_val_acc", ascending=False)
        names = {
            r["trial_id"]: f"{display_name(r, several_seeds(done))}: "
            f"val {pct(r['best_val_acc'])} %, "
            f"test {pct(r['test_acc'])} %"
            for _, r in best.iterrows()
        }
        suffix = f"_{ds}" if len(datasets) > 1 else ""
        fname = f"learning_curves{suffix}.png"
        on = f" on {ds}" if suffix else ""
        plots.curves_png(epochs, names, f"{title}: best trial per model{on}", folder / fname)
        doc.img(fname, f"learning curves of the best trials{on}")


# ----------------------------------------------------------------- ASHA


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
    stops = None
    if decisions is not None and len(decisions):
        decisions = decisions.sort_values(
            ["rung", "time_utc"] if "time_utc" in decisions else "rung"
        )
        stops = decisions[decisions["decision"] == "stop"].drop_duplicates("trial_id")
    else:
        decisions = None  # an empty log says no more than a missing one
    outcome = asha_outcome(trials, stops)
    doc.h(2, "ASHA's stopping decisions")
    run, most = int(trials["epochs_run"].sum()), int(trials["max_epochs"].sum())
    a = prov.get("asha") or {}
    n_asha = sum(v == "stopped by ASHA" for v in outcome.values())
    if not a.get("enabled") and not n_asha:
        doc.p(
            f"ASHA was off in this sweep: every trial ran its epochs or stopped by its own "
            f"rule ({run} of {most} epochs run)."
        )
    else:
        doc.p(
            f"ASHA on `{a.get('metric', METRIC)}` (time attribute "
            f"`{a.get('time_attr', 'epoch')}`, grace period {a.get('grace_period')}, reduction "
            f"factor {a.get('reduction_factor')}) stopped {n_asha} of {len(trials)} trials "
            f"early: {run} of the grid's {most} epochs were run ({100 * run / max(most, 1):.0f} %)."
            " At each rung (epoch milestone) a trial goes on only if its value is at least "
            "the cutoff, the (1 − 1/reduction factor) quantile of the values recorded at "
            "that rung so far: the top 1/reduction factor continue."
            + (
                f" A rung judged only once it held {a['quorum']} records: a trial reaching "
                "one with fewer waited, paused, and was then judged against the others."
                if a.get("quorum")
                else ""
            )
        )
        asha_figure(doc, tables, decisions, outcome, prov, (folder, title))
        if decisions is not None:
            rung_table(doc, decisions, trials, stops)
    trial_outcomes_table(doc, trials, epochs, outcome, stops)


def asha_outcome(trials: pd.DataFrame, stops: pd.DataFrame | None) -> dict[str, str]:
    """trial_id -> how it ended; a stop in ASHA's log overrides 'finished' or 'unknown'."""
    outcome = {r["trial_id"]: stop_reason(r) for _, r in trials.iterrows()}
    for tid in [] if stops is None else stops["trial_id"]:
        if outcome.get(tid) in ("finished", "ended early (reason not recorded)"):
            outcome[tid] = "stopped by ASHA"
    return outcome


def asha_figure(doc, tables, decisions, outcome, prov, where: tuple[Path, str]) -> None:
    """Every trial's validation curve with ASHA's rungs and cutoffs, then the trials that
    went on below a stopped one."""
    folder, title = where
    trials, epochs = tables["trials"], tables["epochs"]
    if decisions is not None:
        rungs = sorted(int(r) for r in decisions["rung"].unique())
        cut = decisions[decisions["cutoff"].notna()][["rung", "cutoff"]]
    else:
        rungs, cut = asha_rungs(prov, int(trials["max_epochs"].max())), None
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
    if rungs:
        doc.ul(late_arrivals(trials, epochs, outcome, rungs))


def rung_table(doc: Doc, decisions: pd.DataFrame, trials: pd.DataFrame, stops) -> None:
    """Per rung: decisions, continues, stops, cutoff range; then trials flagged as stopped
    early that the log holds no stop for."""
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
        ["rung (epoch)", "decisions", "continue", "stop", "no cutoff", "cutoff range (%)"], rows
    )
    flagged = trials.loc[trials["stopped_early"].astype(bool), "trial_id"]
    missing = sorted(set(flagged) - set(stops["trial_id"]))
    if missing:
        doc.p(
            f"trials.parquet marks {', '.join(missing)} as stopped early, but "
            "asha_decisions.parquet holds no stop decision for them."
        )


def trial_outcomes_table(doc: Doc, trials, epochs, outcome: dict, stops) -> None:
    """Every trial, how it ended, and (with ASHA's log) the rung and cutoff that stopped it."""
    last = epochs.sort_values("epoch").groupby("trial_id")["val_acc"].last()
    stop_at = {} if stops is None else {r["trial_id"]: r for _, r in stops.iterrows()}
    header = ["trial", "config", "epochs run", "stopped by", "val acc at stop (%)"]
    header += ["best val acc (%)", *(["ASHA rung", "cutoff (%)"] if stop_at else [])]
    rows = []
    for _, r in trials.sort_values("trial_id").iterrows():
        row = [
            r["trial_id"],
            display_name(r, several_seeds(trials)),
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


# ----------------------------------------------------------------- provenance


PROVENANCE_EXTRAS = (
    ("run_name", "run name"),
    ("mlflow_experiment_id", "MLflow experiment"),
    ("mlflow_parent_run_id", "MLflow parent run"),
    ("tracking_uri", "tracking URI"),
    ("resources", "resources"),
)


def provenance_section(doc: Doc, prov: dict) -> None:
    doc.h(2, "Provenance")
    try:
        items = provenance_items(prov)
    except KeyError as exc:  # an older or hand-made provenance record
        items = [f"(record lacks {exc}; keys: {', '.join(prov) or 'none'})"]
    for key, what in PROVENANCE_EXTRAS:
        if prov.get(key) is not None:
            items.append(f"{what}: `{prov[key]}`" if key != "resources" else f"{what}: {prov[key]}")
    items.append(
        "the full record: `provenance.json` beside the tables, and each Parquet "
        "file's schema metadata (`cnnsweep.provenance`)"
    )
    doc.ul(items)
