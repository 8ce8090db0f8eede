"""The engine alone (no Ray): it learns, and a resumed run equals an uninterrupted one."""

from __future__ import annotations

import torch

from trainables.config import TrialConfig
from trainables.data import load_splits
from trainables.engine import Run, load_checkpoint, save_checkpoint


def synthetic():
    return load_splits("synthetic", val_fraction=0.25, seed=0)


def cfg(**kw):
    base = {
        "model": "resnet18",
        "optimizer": "adam",
        "lr": 0.001,
        "epochs": 3,
        "image_size": 32,
        "batch_size": 32,
    }
    return TrialConfig.from_dict({**base, **kw})


def test_training_learns_the_synthetic_task():
    run = Run(cfg(), synthetic())
    first = run.train_epoch()
    for _ in range(2):
        last = run.train_epoch()
    assert last["train_loss"] < first["train_loss"]
    assert last["val_acc"] >= 0.9, last
    test = run.test_best()
    assert test.acc >= 0.9 and test.confusion.sum() == 128
    assert set(first) == {
        "epoch",
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "lr",
        "images_per_s",
        "step",
    }
    assert first["lr"] == 0.001 and first["images_per_s"] > 0


def test_resume_from_checkpoint_is_bit_identical(tmp_path):
    data = synthetic()
    straight = Run(cfg(optimizer="sgd", lr=0.05, momentum=0.9, model="googlenet"), data)
    a = [straight.train_epoch() for _ in range(2)]

    first = Run(cfg(optimizer="sgd", lr=0.05, momentum=0.9, model="googlenet"), data)
    b = [first.train_epoch()]
    save_checkpoint(first, tmp_path)
    resumed = Run(cfg(optimizer="sgd", lr=0.05, momentum=0.9, model="googlenet"), data)
    resumed.load_state_dict(load_checkpoint(tmp_path))
    assert resumed.epoch == 1
    b.append(resumed.train_epoch())
    for x, y in zip(a, b, strict=True):
        assert {k: v for k, v in x.items() if k != "images_per_s"} == {
            k: v for k, v in y.items() if k != "images_per_s"
        }
    for (k, v), w in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(v, w), k


def test_best_weights_are_the_ones_tested():
    run = Run(cfg(epochs=2), synthetic())
    run.train_epoch()
    best = {k: v.clone() for k, v in run.best_model.items()}
    run.best_val_acc = 2.0  # pretend epoch 1 can't be beaten: epoch 2 must not replace it
    run.train_epoch()
    run.test_best()
    for k, v in run.model.state_dict().items():
        assert torch.equal(v, best[k]), k
