"""What a sweep teaches: which hyperparameter matters for validation accuracy.

The trials table becomes an in-memory Optuna study (one completed trial per trial that
validated, a grid's cells included) and Optuna's own evaluators judge it: fANOVA (a
random forest's functional ANOVA; run once per forest seed, so the table gives the
spread over seeds) and PED-ANOVA (deterministic). ``importance.parquet`` holds the
result, the MLflow parent run gets it as metrics (:func:`importance_metrics`), and the
report draws it beside Optuna's parallel-coordinates plot.

The objective is each trial's ``best_val_acc``, the number validation ranks trials by.
An ASHA-stopped trial enters with the best epoch it reached; its shorter training also
counts against it, which is what ASHA itself judged on.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution
from optuna.importance import (
    FanovaImportanceEvaluator,
    PedAnovaImportanceEvaluator,
    get_param_importances,
)

from sweeps.doc import Doc
from sweeps.plots import plt
from sweeps.trials import data_keys

OBJECTIVE = "best_val_acc"
# The trials table's hyperparameter columns; those that vary within a dataset are judged.
PARAMS = (
    "model",
    "optimizer",
    "lr",
    "momentum",
    "batch_size",
    "image_size",
    "augment",
    "train_rule",
    "max_epochs",
)
FANOVA_SEEDS = 10  # forests per sweep: the spread over seeds says how stable the answer is
MIN_TRIALS = 4  # below this a forest of 4 points says nothing
FEW_TRIALS = 30  # below this the importances are a ranking, not a measurement
EVALUATORS = ("fanova", "ped_anova")
FIGURE_IMPORTANCE = "importance{}.png"
FIGURE_PARALLEL = "parallel_coordinates{}.png"

optuna.logging.set_verbosity(optuna.logging.WARNING)


def judged_params(trials: pd.DataFrame) -> list[str]:
    """The hyperparameters that take more than one value among these trials."""
    return [p for p in PARAMS if p in trials and trials[p].nunique(dropna=True) > 1]


def distributions(trials: pd.DataFrame, params: list[str]) -> dict[str, BaseDistribution]:
    """Optuna distributions covering the trials' values: lr on a log axis, the rest as
    categories (a grid's handful of batch sizes is a choice, not a range)."""
    out: dict[str, BaseDistribution] = {}
    for p in params:
        values = trials[p].dropna()
        if p == "lr":
            out[p] = FloatDistribution(float(values.min()), float(values.max()), log=True)
        else:
            out[p] = CategoricalDistribution(sorted({plain(v) for v in values}))
    return out


def plain(v):
    """numpy scalars -> Python ones (Optuna stores categorical choices as JSON)."""
    return v.item() if isinstance(v, np.generic) else v


def study_of(trials: pd.DataFrame, params: list[str]) -> optuna.Study:
    """An in-memory study with one completed trial per trial that validated; value in %."""
    dists = distributions(trials, params)
    study = optuna.create_study(direction="maximize")
    study.add_trials(
        optuna.trial.create_trial(
            params={p: (float(r[p]) if p == "lr" else plain(r[p])) for p in params},
            distributions=dists,
            value=100 * float(r[OBJECTIVE]),
            user_attrs={"trial_id": str(r["trial_id"])},
        )
        for _, r in trials.iterrows()
    )
    return study


def scored(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials that count: not errored, with a validation accuracy."""
    ok = trials[OBJECTIVE].notna()
    if "status" in trials:
        ok &= trials["status"] != "ERROR"
    return trials[ok]


def importance_table(trials: pd.DataFrame, seeds: int = FANOVA_SEEDS) -> pd.DataFrame:
    """Per dataset, evaluator and hyperparameter: the importance (normalised to sum 1 per
    evaluator; fANOVA's mean over ``seeds`` forests with its std, min and max)."""
    trials = scored(trials).assign(data=lambda t: data_keys(t))
    frames = [
        _one_dataset(group, str(data), seeds)
        for data, group in trials.groupby("data", sort=True)
        if len(group) >= MIN_TRIALS and judged_params(group)
    ]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    return pd.concat(frames, ignore_index=True)[COLUMNS]


COLUMNS = [
    "data",
    "evaluator",
    "param",
    "rank",
    "importance",
    "importance_std",
    "importance_min",
    "importance_max",
    "n_seeds",
    "n_trials",
    "objective",
]


def _one_dataset(trials: pd.DataFrame, data: str, seeds: int) -> pd.DataFrame:
    params = judged_params(trials)
    study = study_of(trials, params)
    runs = {
        "fanova": [FanovaImportanceEvaluator(seed=s) for s in range(seeds)],
        "ped_anova": [PedAnovaImportanceEvaluator()],
    }
    rows = []
    for name, evaluators in runs.items():
        with warnings.catch_warnings():  # PED-ANOVA is "experimental" in Optuna 5
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            got = pd.DataFrame(
                [get_param_importances(study, evaluator=e, params=params) for e in evaluators]
            ).reindex(columns=params, fill_value=0.0)
        mean = got.mean()
        for rank, p in enumerate(mean.sort_values(ascending=False).index, 1):
            rows.append(
                {
                    "data": data,
                    "evaluator": name,
                    "param": p,
                    "rank": rank,
                    "importance": float(mean[p]),
                    "importance_std": float(got[p].std(ddof=0)),
                    "importance_min": float(got[p].min()),
                    "importance_max": float(got[p].max()),
                    "n_seeds": len(evaluators),
                    "n_trials": len(trials),
                    "objective": OBJECTIVE,
                }
            )
    return pd.DataFrame(rows)


def importance_metrics(table: pd.DataFrame) -> dict[str, float]:
    """The table as MLflow metrics: ``importance_<evaluator>_<param>`` (and its fANOVA
    ``..._std``), suffixed ``_<data>`` when the sweep judged several datasets."""
    several = table["data"].nunique() > 1
    out = {}
    for r in table.itertuples():
        key = f"importance_{r.evaluator}_{r.param}" + (f"_{r.data}" if several else "")
        out[key] = float(r.importance)
        if r.n_seeds > 1:
            out[f"{key}_std"] = float(r.importance_std)
    return out


# ------------------------------------------------------------------------- report


def importance_sentence(table: pd.DataFrame, trials: pd.DataFrame) -> str:
    """What matters most for one dataset, how sure that is, and from how many trials."""
    fan = table[table["evaluator"] == "fanova"].sort_values("rank")
    ped = table[table["evaluator"] == "ped_anova"].set_index("param")["importance"]
    n, seeds = int(fan["n_trials"].iloc[0]), int(fan["n_seeds"].iloc[0])
    where = f"for {OBJECTIVE} on {table['data'].iloc[0]}"
    if len(fan) == 1:
        return (
            f"Only **{fan['param'].iloc[0]}** varies among these {n} trials, so it carries "
            f"all the importance {where} by construction; the tables above say which value wins."
        )
    parts = [
        f"**{r.param}** ({r.importance:.2f} ± {r.importance_std:.2f}"
        + (f"; PED-ANOVA {ped[r.param]:.2f})" if r.param in ped else ")")
        for r in fan.itertuples()
    ]
    top_ped = ped.idxmax() if len(ped) else None
    agree = (
        "PED-ANOVA ranks the same parameter first"
        if top_ped == fan["param"].iloc[0]
        else f"PED-ANOVA (what sets the top 10 % of trials apart) ranks **{top_ped}** first "
        "instead, so the top place is not settled: what matters is likely a combination of "
        "values, which the heat-map shows cell by cell"
    )
    stopped = int(trials["stopped_early"].astype(bool).sum()) if "stopped_early" in trials else 0
    caveat = (
        f"fewer than {FEW_TRIALS} trials: read it as a ranking, not a measurement"
        if n < FEW_TRIALS
        else "the spread over seeds is the forest's uncertainty, not the sweep's"
    )
    tied = [f"{a} and {b}" for a, b in confounded(trials, list(fan["param"]))]
    early = f", {stopped} stopped early by ASHA (judged at the epochs they reached)"
    return (
        f"What matters most {where}: "
        + ", then ".join(parts)
        + f" (fANOVA mean ± std over {seeds} forest seeds). {agree}. From {n} trials"
        + (early if stopped else "")
        + f"; {caveat}."
        + (
            f" {'; '.join(tied).capitalize()} change together in these trials, so their "
            "shares cannot be told apart."
            if tied
            else ""
        )
    )


def confounded(trials: pd.DataFrame, params: list[str]) -> list[tuple[str, str]]:
    """Pairs of hyperparameters that determine each other here (each paper row brings its
    own model and augmentation): the evaluators split their effect arbitrarily."""

    def determines(a: str, b: str) -> bool:
        return bool((trials.groupby(a, dropna=False)[b].nunique(dropna=False) <= 1).all())

    return [
        (a, b)
        for i, a in enumerate(params)
        for b in params[i + 1 :]
        if determines(a, b) and determines(b, a)
    ]


def importance_section(doc: Doc, tables: dict[str, pd.DataFrame], folder: Path, title: str) -> None:
    """The report's section: per dataset a sentence, the importance bars and Optuna's
    parallel-coordinates plot. Uses ``importance.parquet`` when the sweep wrote one, else
    computes it from the trials table (older results)."""
    # the report's trials carry their data key in "dataset" already (report.load)
    trials = tables["trials"].drop(columns="split", errors="ignore")
    table = tables.get("importance")
    if table is None:
        table = importance_table(trials)
    doc.h(2, "What matters: hyperparameter importance")
    if table.empty:
        doc.p(
            f"Not judged: no dataset has {MIN_TRIALS} or more validated trials with a "
            "hyperparameter that varies."
        )
        return
    doc.p(
        "Importance of each hyperparameter for the trials' best validation accuracy, by "
        "Optuna's fANOVA and PED-ANOVA evaluators over the trials table (each normalised "
        "to sum to 1); the parallel-coordinates plot shows every trial, coloured by it."
    )
    scored_trials = scored(trials).assign(data=lambda t: data_keys(t))
    several = table["data"].nunique() > 1
    for data, t in table.groupby("data", sort=True):
        group = scored_trials[scored_trials["data"] == data]
        suffix = f"_{data}" if several else ""
        on = f" on {data}" if several else ""
        doc.p(importance_sentence(t, group))
        importance_png(t, f"{title}: importance{on}", folder / FIGURE_IMPORTANCE.format(suffix))
        doc.img(FIGURE_IMPORTANCE.format(suffix), f"hyperparameter importance{on}")
        params = list(t.loc[t["evaluator"] == "fanova"].sort_values("rank")["param"])
        parallel_png(group, params, f"{title}: trials{on}", folder / FIGURE_PARALLEL.format(suffix))
        doc.img(FIGURE_PARALLEL.format(suffix), f"parallel coordinates{on}")


def importance_png(table: pd.DataFrame, title: str, path: Path) -> Path:
    """Horizontal bars per hyperparameter: fANOVA's mean with its min-max over seeds, and
    PED-ANOVA's value beside it."""
    order = list(table.loc[table["evaluator"] == "fanova"].sort_values("rank")["param"])[::-1]
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.55 * len(order)))
    y = np.arange(len(order))
    for k, (name, colour) in enumerate((("fanova", "C0"), ("ped_anova", "C1"))):
        t = table[table["evaluator"] == name].set_index("param").reindex(order)
        err = None
        if name == "fanova":
            err = [t["importance"] - t["importance_min"], t["importance_max"] - t["importance"]]
        label = "fANOVA (bar: min-max over seeds)" if name == "fanova" else "PED-ANOVA"
        ax.barh(
            y + (0.2 if k == 0 else -0.2),
            t["importance"],
            0.38,
            xerr=err,
            color=colour,
            label=label,
            capsize=3,
        )
    ax.set_yticks(y, order)
    ax.set_xlabel(f"importance for {OBJECTIVE} (sums to 1 per evaluator)")
    ax.set_xlim(0, 1)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def parallel_png(trials: pd.DataFrame, params: list[str], title: str, path: Path) -> Path:
    """Optuna's parallel-coordinates plot of the trials (its matplotlib backend)."""
    from optuna.visualization.matplotlib import plot_parallel_coordinate

    study = study_of(trials, params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ax = plot_parallel_coordinate(study, params=params, target_name="best val acc (%)")
    fig = ax.figure
    fig.set_size_inches(max(6.0, 2.2 * (len(params) + 1)), 4.2)
    ax.set_title("")  # Optuna's own title sits on the top tick labels
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
