"""ANet-c6's training rules against hand-worked sequences, and inside the engine."""

from __future__ import annotations

import pytest
import torch

from trainables.config import ConfigError, TrialConfig
from trainables.data import load_splits
from trainables.engine import Run
from trainables.rules import CheckAndAdjust, EarlyBreak, Level

LEVELS = (
    Level(above=-1.0, gate=0.0, lr_scale=1.0),
    Level(above=0.5, gate=0.05, lr_scale=1.0),
    Level(above=0.8, gate=0.03, lr_scale=0.5),
    Level(above=0.9, gate=0.015, lr_scale=0.1),
)


def test_check_and_adjust_hand_worked_sequence():
    rule = CheckAndAdjust(base_lr=0.1, levels=LEVELS)
    # batch acc -> (lr, need_save, acc_best after), worked by hand from Algorithm 1:
    expected = [
        (0.10, (0.1, True, 0.0)),  # first check: < 0.2 counts as 0; best was -1: save
        (0.15, (0.1, False, 0.0)),  # 0 - 0 = 0 is not > gate 0
        (0.30, (0.1, True, 0.3)),  # level 1 (best 0 > -1): gate 0; 0.3 > 0
        (0.55, (0.1, True, 0.55)),  # best 0.3: gate 0; now best 0.55 -> level 2
        (0.59, (0.1, False, 0.55)),  # level 2: 0.04 is not > 0.05
        (0.85, (0.05, True, 0.85)),  # 0.30 > 0.05: save; best 0.85 -> level 3: lr x0.5
        (0.87, (0.05, False, 0.85)),  # level 3: 0.02 is not > 0.03
        (0.95, (0.01, True, 0.95)),  # 0.10 > 0.03: save; best 0.95 -> level 4: lr x0.1
        (0.96, (0.01, False, 0.95)),  # level 4: 0.01 is not > 0.015
        (0.97, (0.01, True, 0.97)),  # 0.02 > 0.015
        (0.50, (0.01, False, 0.97)),  # a bad batch never lowers the best or raises the lr
    ]
    for acc, (lr, save, best) in expected:
        got_lr, got_save = rule.check(acc)
        assert (got_lr, got_save, rule.acc_best) == pytest.approx((lr, save, best)), acc


def test_check_and_adjust_state_round_trip():
    a = CheckAndAdjust(base_lr=0.01, levels=LEVELS)
    a.check(0.95)
    b = CheckAndAdjust(base_lr=0.01, levels=LEVELS)
    b.load_state_dict(a.state_dict())
    assert b.check(0.96) == a.check(0.96) == (pytest.approx(0.001), False)


def test_early_break_hand_worked_sequence():
    rule = EarlyBreak(val_expect=0.9, train_expect=0.95, streak_needed=5)
    for acc in (0.96, 0.97, 0.99, 1.0):  # four batches above: not yet five
        rule.batch(acc)
    assert not rule.epoch_end(val_acc=0.99)
    rule.batch(0.96)  # the fifth
    assert rule.streak == 5
    assert not rule.epoch_end(val_acc=0.90)  # validation must be *above* its expectation
    assert rule.epoch_end(val_acc=0.91)
    rule.batch(0.95)  # not above 0.95: the streak restarts
    assert rule.streak == 0 and not rule.epoch_end(val_acc=0.99)


def cfg(**kw) -> TrialConfig:
    base = {"model": "resnet18", "optimizer": "adam", "lr": 1e-3, "epochs": 2, "image_size": 32}
    return TrialConfig.from_dict({**base, **kw})


def synthetic():
    return load_splits("synthetic", val_fraction=0.1, seed=0)


def test_engine_check_and_adjust_saves_candidates_and_sets_lr():
    run = Run(cfg(train_rule="check_and_adjust", check_every=3, epochs=1), synthetic())
    m = run.train_epoch()
    steps = m["step"]
    checks = len(range(1, steps + 1, 3))
    assert 1 <= run.saves <= checks  # the first check always saves
    assert run.best_model is not None and run.best_epoch == 1
    # the lr the rule set is what the optimizer used
    assert m["lr"] == pytest.approx(run.rule.base_lr * run.rule.level().lr_scale)


def test_engine_early_break_stops_the_run():
    run = Run(
        cfg(early_break=True, early_break_val_acc=0.5, early_break_train_acc=0.5, epochs=20),
        synthetic(),
    )
    while run.epoch < 20 and not run.early_stopped:
        run.train_epoch()
    assert run.stop_reason == "early_break" and run.epoch < 20


def test_rule_config_errors():
    with pytest.raises(ConfigError, match="'train_rule' = 'weekly' is invalid; allowed: one of"):
        cfg(train_rule="weekly")
    with pytest.raises(ConfigError, match="'lr_schedule' = 'onecycle'"):
        cfg(train_rule="check_and_adjust", lr_schedule="onecycle")
    with pytest.raises(ConfigError, match="'augment' = 'mixup' is invalid"):
        cfg(augment="mixup")
    with pytest.raises(ConfigError, match="'early_break_val_acc' = 1.5"):
        cfg(early_break_val_acc=1.5)


def test_augmented_training_is_deterministic_and_resumable():
    data = synthetic()
    a = Run(cfg(augment="flip_shift", epochs=1), data)
    b = Run(cfg(augment="flip_shift", epochs=1), data)
    ma, mb = a.train_epoch(), b.train_epoch()
    assert ma["train_loss"] == mb["train_loss"]
    state = a.state_dict()
    c = Run(cfg(augment="flip_shift", epochs=1), data)
    c.load_state_dict(state)
    assert torch.equal(c.aug_gen.get_state(), a.aug_gen.get_state())
