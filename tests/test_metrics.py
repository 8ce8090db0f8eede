"""trainables.metrics: a hand-worked 3x3 example, scikit-learn as the oracle on random labels,
quartiles against numpy, ResNet-50's published parameter count and GFLOPs, and timing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sklearn.metrics as skm
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st

from trainables.metrics import (
    classification_metrics,
    confusion_matrix,
    count_gflops,
    count_params,
    inference_seconds_per_1000,
    per_class_accuracy,
    quartiles,
)

# Hand-worked example, rows = true class, columns = predicted class (16 samples):
#
#            pred 0  pred 1  pred 2 | row sum
#   true 0      5       1       0   |   6
#   true 1      2       3       1   |   6
#   true 2      0       0       4   |   4
#   col sum     7       4       5   |  16
#
# TP = (5, 3, 4); FP = col - TP = (2, 1, 1); FN = row - TP = (1, 3, 0);
# TN = 16 - TP - FP - FN = (8, 9, 11).
# accuracy    = 12 / 16                                  = 0.75
# precision   = (5/7, 3/4, 4/5)    mean = 317/140 / 3    = 317/420  ~ 0.754762
# recall      = (5/6, 3/6, 4/4)    mean = 7/3 / 3        = 7/9      ~ 0.777778
# specificity = (8/10, 9/10, 11/12) mean = 157/60 / 3    = 157/180  ~ 0.872222
# F1 = 2TP/(2TP+FP+FN) = (10/13, 6/10, 8/9) mean = 1321/585 / 3 = 1321/1755 ~ 0.752707
# per-class accuracy = TP / row sum = (5/6, 1/2, 1)
HAND = np.array([[5, 1, 0], [2, 3, 1], [0, 0, 4]])


def labels_from(conf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Expand a confusion matrix back into (y_true, y_pred) label arrays."""
    k = conf.shape[0]
    t, p = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    return np.repeat(t.ravel(), conf.ravel()), np.repeat(p.ravel(), conf.ravel())


def test_hand_worked_3x3():
    y_true, y_pred = labels_from(HAND)
    rng = np.random.default_rng(0)
    order = rng.permutation(y_true.size)
    conf = confusion_matrix(y_true[order], y_pred[order], 3)
    assert conf.dtype == np.int64
    np.testing.assert_array_equal(conf, HAND)

    m = classification_metrics(conf)
    assert m == pytest.approx(
        {
            "accuracy": 0.75,
            "macro_precision": 317 / 420,
            "macro_sensitivity": 7 / 9,
            "macro_specificity": 157 / 180,
            "macro_f1": 1321 / 1755,
        },
        rel=1e-12,
    )
    np.testing.assert_allclose(per_class_accuracy(conf), [5 / 6, 1 / 2, 1.0], rtol=1e-12)


def test_zero_denominators_count_as_zero_and_absent_class_is_nan():
    # Class 1 has samples but is never predicted; class 2 never occurs at all.
    conf = np.array([[2, 0, 0], [1, 0, 0], [0, 0, 0]])
    # precision (2/3, 0, 0); recall (1, 0, 0); F1 (4/5, 0, 0);
    # specificity: class 0 TN=0,FP=1 -> 0; class 1 TN=2,FP=0 -> 1; class 2 TN=3,FP=0 -> 1.
    m = classification_metrics(conf)
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["macro_precision"] == pytest.approx(2 / 9)
    assert m["macro_sensitivity"] == pytest.approx(1 / 3)
    assert m["macro_f1"] == pytest.approx(4 / 15)
    assert m["macro_specificity"] == pytest.approx(2 / 3)
    acc = per_class_accuracy(conf)
    np.testing.assert_allclose(acc[:2], [1.0, 0.0])
    assert math.isnan(acc[2])
    assert classification_metrics(np.zeros((2, 2)))["accuracy"] == 0.0


def test_confusion_matrix_rejects_bad_labels():
    with pytest.raises(ValueError, match="allowed: 0..2"):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="allowed"):
        confusion_matrix(np.array([0, -1]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="differ in length"):
        confusion_matrix(np.array([0, 1]), np.array([0]), 3)
    with pytest.raises(ValueError, match="integer"):
        confusion_matrix(np.array([0.0, 1.0]), np.array([0, 1]), 3)


@st.composite
def label_pairs(draw) -> tuple[np.ndarray, np.ndarray, int]:
    """Random (y_true, y_pred, K) with 2..24 classes, often with classes that never occur."""
    k = draw(st.integers(2, 24))
    n = draw(st.integers(1, 120))
    # Restrict each side to a random subset of classes so some classes are missing from
    # y_true, from y_pred, or from both.
    true_classes = draw(st.lists(st.integers(0, k - 1), min_size=1, max_size=k, unique=True))
    pred_classes = draw(st.lists(st.integers(0, k - 1), min_size=1, max_size=k, unique=True))
    y_true = draw(st.lists(st.sampled_from(true_classes), min_size=n, max_size=n))
    y_pred = draw(st.lists(st.sampled_from(pred_classes), min_size=n, max_size=n))
    return np.array(y_true, dtype=np.int64), np.array(y_pred, dtype=np.int64), k


@settings(max_examples=150, deadline=None)
@given(label_pairs())
def test_matches_scikit_learn(case):
    y_true, y_pred, k = case
    labels = list(range(k))  # every class enters the macro mean, present or not
    conf = confusion_matrix(y_true, y_pred, k)
    np.testing.assert_array_equal(conf, skm.confusion_matrix(y_true, y_pred, labels=labels))

    m = classification_metrics(conf)
    kw = {"labels": labels, "average": "macro", "zero_division": 0}
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred), abs=1e-12)
    assert m["macro_precision"] == pytest.approx(
        skm.precision_score(y_true, y_pred, **kw), abs=1e-12
    )
    assert m["macro_sensitivity"] == pytest.approx(
        skm.recall_score(y_true, y_pred, **kw), abs=1e-12
    )
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, **kw), abs=1e-12)

    mcm = skm.multilabel_confusion_matrix(y_true, y_pred, labels=labels)  # [[tn, fp], [fn, tp]]
    tn, fp = mcm[:, 0, 0], mcm[:, 0, 1]
    spec = [t / (t + f) if t + f else 0.0 for t, f in zip(tn, fp, strict=True)]
    assert m["macro_specificity"] == pytest.approx(float(np.mean(spec)), abs=1e-12)

    for key, v in m.items():
        assert 0.0 <= v <= 1.0, key
    recall = skm.recall_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    acc = per_class_accuracy(conf)
    present = conf.sum(axis=1) > 0
    np.testing.assert_allclose(acc[present], recall[present], atol=1e-12)
    assert np.isnan(acc[~present]).all()


def test_quartiles_match_numpy_and_ignore_nan():
    values = np.array([7.0, 1.0, 3.0, 10.0, 4.0, 2.0, 8.0])
    q = quartiles(values)
    expected = np.percentile(values, [0, 25, 50, 75, 100])
    # Sorted: 1 2 3 4 7 8 10 -> q1 = 2.5, median = 4, q3 = 7.5 (linear interpolation).
    np.testing.assert_allclose(expected, [1.0, 2.5, 4.0, 7.5, 10.0])
    assert list(q) == ["min", "q1", "median", "q3", "iqr", "max"]
    assert [q["min"], q["q1"], q["median"], q["q3"], q["max"]] == pytest.approx(expected)
    assert q["iqr"] == pytest.approx(5.0)

    assert quartiles(np.append(values, [np.nan, np.nan])) == pytest.approx(q)
    assert all(math.isnan(v) for v in quartiles(np.array([np.nan])).values())


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Run torch on one thread: on a busy small machine, two contending OpenMP threads make
    a 32 px MobileNet forward pass take ~1 s instead of ~4 ms (as trials do, num_threads=1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def resnet50() -> torch.nn.Module:
    return torchvision.models.resnet50()


def test_resnet50_params_and_gflops_match_the_published_numbers(resnet50):
    assert count_params(resnet50) == 25_557_032
    resnet50.train()
    resnet50.layer1.eval()  # a mixed state must come back exactly
    gflops = count_gflops(resnet50, (1, 3, 224, 224))
    assert gflops == pytest.approx(4.1, rel=0.02)
    assert resnet50.training and not resnet50.layer1.training and resnet50.layer2.training
    with pytest.raises(ValueError, match="batch-1"):
        count_gflops(resnet50, (2, 3, 224, 224))


def test_inference_timing_is_positive_and_restores_mode():
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2(num_classes=10)
    model.train()
    for bs in (1, 4):
        s = inference_seconds_per_1000(
            model, (1, 3, 32, 32), batch_size=bs, device="cpu", n_samples=8, warmup=1
        )
        assert math.isfinite(s) and s > 0
    assert model.training
    with pytest.raises(ValueError, match="move it first"):
        inference_seconds_per_1000(model, (1, 3, 32, 32), batch_size=1, device="cuda")
