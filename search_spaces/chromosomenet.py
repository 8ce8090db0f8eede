"""The ChromosomeNet baselines (paper 004): eight ImageNet models on 24-class chromosomes.

The paper trains each baseline once (Adam-style 1cycle, lr 1e-4); the service sweeps
model x optimizer x lr over 1e-4..1e-1 and reports, per model, the trial that validation
picks, beside the paper's Tables 1-4.
"""

from __future__ import annotations

from search_spaces import read_published

MODELS = (
    "mobilenet_v2",
    "densenet121",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext101_32x8d",
    "res2net50",
    "resnest50",
)
OPTIMIZERS = ("sgd", "adam")
LRS = (1e-4, 1e-3, 1e-2, 1e-1)
LR_RANGE = (1e-4, 1e-1)
# The paper's training recipe, as trial config keys.
RECIPE = {
    "label_smoothing": 0.1,
    "lr_schedule": "onecycle",
    "early_stop_patience": 5,
    "select_by": "val_loss",
    "measure_inference": True,
    "pretrained": True,
}
TABLE2_CSV = "chromosomenet_table2.csv"
TABLE3_CSV = "chromosomenet_table3_per_class.csv"
TABLE4_CSV = "chromosomenet_table4_quartiles.csv"
TABLE3_MAX_CSV = "chromosomenet_table3_max.csv"  # Table 3's "Max" column

# Published numbers that the paper's own numbers contradict (paper_notes.csv gives the
# lines): (table, metric) -> {model: why}; metric "*" = every metric of the row.
_SIX = MODELS[:6]  # baselines #1-#6
INCONSISTENT = {
    ("table2_metrics", "f1"): dict.fromkeys(
        _SIX, "macro F1 above the mean of macro precision and sensitivity, which it cannot be"
    ),
    ("table2_metrics", "sensitivity"): dict.fromkeys(
        _SIX, "not the mean of the model's Table 3 per-class accuracies (Eq. 8)"
    ),
    ("table2_metrics", "specificity"): dict.fromkeys(
        MODELS, "Eq. 3 defines it as TN/(TP+TN), which cannot reach the published values"
    ),
    ("table1_models", "params_m"): {"res2net50": "25.70 M counts a 1000-class head (24: 23.70 M)"},
    ("table3_per_class", "*"): dict.fromkeys(
        ("resnet101", "resnext101_32x8d"), "rows #4 and #6 are identical in 22 of 24 classes"
    ),
    ("table4_quartiles", "max"): {"res2net50": "max 99.79 above Table 3's largest value 99.78"},
}


def inconsistent(table: str, metric: str, model: str) -> str | None:
    """'paper_inconsistent: why' where the paper contradicts itself on this number."""
    why = INCONSISTENT.get((table, metric), {}).get(model)
    return f"paper_inconsistent: {why}" if why else None


def _by_model(filename: str) -> dict[str, dict[str, str]]:
    rows = read_published(filename)
    t2 = {r["baseline"]: r["model"] for r in read_published(TABLE2_CSV)}
    return {t2[r["baseline"]]: r for r in rows}


def table2() -> dict[str, dict[str, float]]:
    """model -> params_m, gflops, precision, accuracy, f1, sensitivity, specificity, ..."""
    out = {}
    for r in read_published(TABLE2_CSV):
        out[r["model"]] = {k: float(v) for k, v in r.items() if k not in ("baseline", "model")}
    return out


def table3() -> dict[str, dict[str, float]]:
    """model -> class name ('1'..'22','X','Y','avg') -> per-class test accuracy %."""
    return {
        m: {k: float(v) for k, v in r.items() if k != "baseline"}
        for m, r in _by_model(TABLE3_CSV).items()
    }


def table4() -> dict[str, dict[str, float]]:
    """model -> min, q1, median, q3, iqr, max of the per-class accuracies %."""
    return {
        m: {k: float(v) for k, v in r.items() if k != "baseline"}
        for m, r in _by_model(TABLE4_CSV).items()
    }
