"""The ANet-c6 paper's two training rules, as small state machines the engine drives.

**Check and adjust** (its Algorithm 1). Every ``check_every`` optimizer steps (200 in the
paper, and once after the very first mini-batch) the accuracy of that step's mini-batch
is compared with the best one so far. The best accuracy picks a *level*; the level sets a
*gate* and a learning rate. When the mini-batch accuracy beats the best by more than the
gate, the weights are saved as a candidate and the best is raised. Later (the paper's
"validating procedure") every candidate is scored on the validation split and the best
one is tested; the engine scores each candidate as it is saved, which picks the same one
without keeping them all. Accuracies below 0.2 count as 0 (Figure 3's caption).

The paper names levels 1-4 but gives no numbers. Ours (:data:`LEVELS`): mini-batches of
64 quantise accuracy in steps of 1/64 = 0.016, so the gates are a few such steps at first
and shrink as training converges, while the learning rate is cut 2x at 80 % and 10x at
90 %: the usual step decay, driven by accuracy instead of by the step count.

**Early break** (its section 2.2.1). After each epoch: if validation accuracy is above its
expectation *and* the training accuracy has been above its expectation for five
consecutive mini-batches, training stops. The paper gives no expectations; the sweep sets
them (``sweeps/anet_generalization.py`` explains its values).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Level:
    above: float  # the level applies once the best mini-batch accuracy exceeds this
    gate: float  # a candidate must beat the best by more than this
    lr_scale: float  # learning rate = base lr x this


LEVELS: tuple[Level, ...] = (
    Level(above=-1.0, gate=0.0, lr_scale=1.0),  # nothing saved yet: the first check saves
    Level(above=0.5, gate=0.05, lr_scale=1.0),
    Level(above=0.8, gate=0.03, lr_scale=0.5),
    Level(above=0.9, gate=0.015, lr_scale=0.1),
)
FLOOR = 0.2  # mini-batch accuracies below this count as 0


@dataclass
class CheckAndAdjust:
    """Algorithm 1; ``check`` returns (learning rate to use from now on, need_save)."""

    base_lr: float
    levels: tuple[Level, ...] = LEVELS
    floor: float = FLOOR
    acc_best: float = -1.0  # below any accuracy: the first check always saves

    def level(self) -> Level:
        passed = [lv for lv in self.levels if self.acc_best > lv.above]
        return passed[-1] if passed else self.levels[0]

    def check(self, batch_acc: float) -> tuple[float, bool]:
        acc = batch_acc if batch_acc >= self.floor else 0.0
        need_save = acc - self.acc_best > self.level().gate
        if need_save:
            self.acc_best = acc
        # The lr follows the level of the (possibly raised) best accuracy.
        return self.base_lr * self.level().lr_scale, need_save

    def state_dict(self) -> dict:
        return {"acc_best": self.acc_best}

    def load_state_dict(self, state: dict) -> None:
        self.acc_best = float(state["acc_best"])

    def describe(self) -> list[dict]:
        return [asdict(lv) for lv in self.levels]


@dataclass
class EarlyBreak:
    """Stop when val accuracy > ``val_expect`` after an epoch and the last ``streak_needed``
    mini-batches all had training accuracy > ``train_expect``."""

    val_expect: float
    train_expect: float
    streak_needed: int = 5
    streak: int = 0  # consecutive mini-batches above the training expectation

    def batch(self, train_acc: float) -> None:
        self.streak = self.streak + 1 if train_acc > self.train_expect else 0

    def epoch_end(self, val_acc: float) -> bool:
        return val_acc > self.val_expect and self.streak >= self.streak_needed

    def state_dict(self) -> dict:
        return {"streak": self.streak}

    def load_state_dict(self, state: dict) -> None:
        self.streak = int(state["streak"])
