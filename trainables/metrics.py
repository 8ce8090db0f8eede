"""Classification metrics, summary statistics and model cost measures, as pure functions.

Everything here depends on numpy and torch only (no Ray, no MLflow), so a sweep's reporting
code, an offline analysis notebook and the tests compute the same numbers the same way.

Conventions, chosen to match the papers the sweeps reproduce and scikit-learn:

* A confusion matrix has rows = true class and columns = predicted class.
* Rates are fractions in ``[0, 1]``, never percent.
* A per-class rate whose denominator is zero counts as ``0.0`` in the macro averages, as
  scikit-learn's ``zero_division=0`` does. Every one of the ``num_classes`` classes enters
  the macro averages, also one that appears in neither ``y_true`` nor ``y_pred`` (it scores
  0.0 precision, recall and F1): this equals scikit-learn with ``labels=range(num_classes)``,
  not its default, which averages over the labels present only.
* GFLOPs are multiply-accumulates (MACs) / 1e9, as in papers' tables.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

__all__ = [
    "classification_metrics",
    "confusion_matrix",
    "count_gflops",
    "count_params",
    "inference_seconds_per_1000",
    "per_class_accuracy",
    "quartiles",
]


def _labels(y: np.ndarray, name: str, num_classes: int) -> np.ndarray:
    """Return ``y`` as a 1-D int64 array, checking it holds class indices in range."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        return arr.astype(np.int64)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.bool_)):
        raise ValueError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= num_classes:
        raise ValueError(f"{name} has labels in [{lo}, {hi}], allowed: 0..{num_classes - 1}")
    return arr.astype(np.int64)


def _safe_div(num: np.ndarray, den: np.ndarray, fill: float) -> np.ndarray:
    """Elementwise ``num / den`` as float64, with ``fill`` where ``den == 0``."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, fill, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _square(conf: np.ndarray) -> np.ndarray:
    """Return ``conf`` as a KxK int64 array with non-negative counts, or raise."""
    arr = np.asarray(conf)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] == 0:
        raise ValueError(f"confusion matrix must be K x K with K >= 1, got shape {arr.shape}")
    if (arr < 0).any():
        raise ValueError("confusion matrix has negative counts")
    return arr.astype(np.int64)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Count (true, predicted) label pairs into a ``num_classes`` square int64 matrix.

    Rows are true classes and columns predicted classes, as in scikit-learn, so row ``i``
    sums to the number of samples of class ``i``. The size comes from ``num_classes`` and not
    from the labels seen, so a class missing from a small test split still has its row and
    column and matrices from different splits line up.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    t = _labels(y_true, "y_true", num_classes)
    p = _labels(y_pred, "y_pred", num_classes)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.size} vs {p.size}")
    counts = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def classification_metrics(conf: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-averaged precision, sensitivity, specificity and F1 of a matrix.

    ``conf`` is K x K with rows = true class. Per class c, with TP = conf[c, c],
    FP = column sum - TP, FN = row sum - TP and TN = total - TP - FP - FN:
    precision = TP / (TP + FP), sensitivity (recall) = TP / (TP + FN),
    specificity = TN / (TN + FP) (the standard one-vs-rest definition) and
    F1 = 2 P R / (P + R). Each is averaged with equal weight over all K classes (macro), which
    is how papers report them for balanced and imbalanced sets alike.

    A per-class value whose denominator is zero is 0.0 (scikit-learn's ``zero_division=0``),
    e.g. the precision of a class never predicted, or the F1 of a class with P = R = 0.
    Accuracy is trace / total, and 0.0 for an empty matrix. All values are in [0, 1].
    """
    c = _square(conf)
    total = int(c.sum())
    tp = np.diag(c).astype(np.float64)
    fp = c.sum(axis=0) - tp
    fn = c.sum(axis=1) - tp
    tn = total - tp - fp - fn
    precision = _safe_div(tp, tp + fp, 0.0)
    recall = _safe_div(tp, tp + fn, 0.0)
    specificity = _safe_div(tn, tn + fp, 0.0)
    f1 = _safe_div(2 * precision * recall, precision + recall, 0.0)
    return {
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "macro_precision": float(precision.mean()),
        "macro_sensitivity": float(recall.mean()),
        "macro_specificity": float(specificity.mean()),
        "macro_f1": float(f1.mean()),
    }


def per_class_accuracy(conf: np.ndarray) -> np.ndarray:
    """Fraction of each true class predicted correctly: TP / row sum (= per-class recall).

    This is what per-class "accuracy" tables such as ChromosomeNet's Table 3 report. A class
    with no samples gets NaN rather than 0.0, so it is visibly absent and ``quartiles`` (which
    ignores NaN) summarises only the classes that were tested.
    """
    c = _square(conf)
    return _safe_div(np.diag(c), c.sum(axis=1), math.nan)


def quartiles(values: np.ndarray) -> dict[str, float]:
    """Five-number summary plus IQR of ``values``, ignoring NaN, for box plots and tables.

    Uses ``np.nanpercentile`` with numpy's default linear interpolation, so the numbers match
    ``np.percentile`` on the non-NaN values. Empty or all-NaN input gives NaN for every key.
    """
    arr = np.asarray(values, dtype=np.float64).ravel()
    keys = ("min", "q1", "median", "q3", "max")
    if arr.size == 0 or np.isnan(arr).all():
        out = dict.fromkeys(keys, math.nan)
    else:
        qs = np.nanpercentile(arr, [0.0, 25.0, 50.0, 75.0, 100.0])
        out = {k: float(q) for k, q in zip(keys, qs, strict=True)}
    out["iqr"] = out["q3"] - out["q1"]
    return {k: out[k] for k in ("min", "q1", "median", "q3", "iqr", "max")}


def count_params(model: torch.nn.Module) -> int:
    """Number of parameters of ``model``, trainable or frozen (what papers' tables list)."""
    return sum(p.numel() for p in model.parameters())


def _modes(model: torch.nn.Module) -> list[tuple[torch.nn.Module, bool]]:
    """Every submodule with its training flag, to restore mixed train/eval states exactly."""
    return [(m, m.training) for m in model.modules()]


def _restore(modes: list[tuple[torch.nn.Module, bool]]) -> None:
    """Set each submodule's training flag back to what ``_modes`` recorded."""
    for m, training in modes:
        m.training = training


def _input_like(model: torch.nn.Module, shape: tuple[int, ...], device=None) -> torch.Tensor:
    """A random input of ``shape`` on the model's device (or ``device``) and float dtype."""
    params = [p for p in model.parameters() if p.is_floating_point()]
    dtype = params[0].dtype if params else torch.float32
    if device is None:
        device = params[0].device if params else torch.device("cpu")
    return torch.randn(shape, dtype=dtype, device=device)


def _check_batch1(input_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Check ``input_shape`` is a batch-1 shape ``(1, ...)`` and return it as a tuple."""
    shape = tuple(int(s) for s in input_shape)
    if len(shape) < 2 or shape[0] != 1:
        raise ValueError(f"input_shape must be a batch-1 shape like (1, 3, 224, 224): {shape}")
    return shape


def count_gflops(model: torch.nn.Module, input_shape: tuple[int, ...]) -> float:
    """GFLOPs of one batch-1 forward pass, counted as multiply-accumulates like papers do.

    Measured with torch's ``FlopCounterMode`` on one forward pass in eval mode under
    ``torch.no_grad()``. FlopCounterMode counts a multiply-accumulate as 2 FLOPs (e.g. 8.2 G
    for ResNet-50 at 224 px), whereas the tables of the papers we compare with (ResNet-50:
    4.1 GFLOPs) count one per MAC, so the count is halved. Only matmul/conv-like ops are
    counted (not activations, norms or pooling), which is also the papers' convention.
    ``input_shape`` must start with a batch of 1, e.g. ``(1, 3, 224, 224)``. The training
    flags of the model's modules are restored afterwards.
    """
    shape = _check_batch1(input_shape)
    modes = _modes(model)
    try:
        model.eval()
        x = _input_like(model, shape)
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(x)
        flops = counter.get_total_flops()
    finally:
        _restore(modes)
    return flops / 2 / 1e9


def inference_seconds_per_1000(
    model: torch.nn.Module,
    input_shape: tuple[int, ...],
    *,
    batch_size: int,
    device: torch.device | str,
    n_samples: int = 64,
    warmup: int = 2,
) -> float:
    """Wall-clock seconds to predict 1,000 samples at ``batch_size``, extrapolated.

    Runs ``warmup`` untimed batches, then times ``ceil(n_samples / batch_size)`` full batches
    of random input (at least one) in eval mode under ``torch.inference_mode()``, and scales
    the time per sample to 1,000 samples. CUDA is synchronised before and after timing, so
    queued kernels are counted. ``n_samples`` is small by default because this usually runs
    on CPU; raise it for steadier numbers.

    ``input_shape`` is the same batch-1 shape as for ``count_gflops`` (e.g. ``(1, 3, 32, 32)``);
    its leading 1 is replaced by ``batch_size``. The model must already be on ``device`` (it
    is not moved, so the caller's model is left where it was); the training flags of its
    modules are restored afterwards.
    """
    if batch_size < 1 or n_samples < 1 or warmup < 0:
        raise ValueError(
            f"need batch_size >= 1, n_samples >= 1, warmup >= 0; got "
            f"{batch_size}, {n_samples}, {warmup}"
        )
    shape = (batch_size, *_check_batch1(input_shape)[1:])
    device = torch.device(device)
    for p in model.parameters():
        if p.device.type != device.type or (
            device.index is not None and p.device.index != device.index
        ):
            raise ValueError(f"model is on {p.device}, not on {device}; move it first")
        break
    n_batches = max(1, math.ceil(n_samples / batch_size))
    cuda = device.type == "cuda"
    modes = _modes(model)
    try:
        model.eval()
        x = _input_like(model, shape, device=device)
        with torch.inference_mode():
            for _ in range(warmup):
                model(x)
            if cuda:
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            for _ in range(n_batches):
                model(x)
            if cuda:
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - t0
    finally:
        _restore(modes)
    return seconds / (n_batches * batch_size) * 1000.0
