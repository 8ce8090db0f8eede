"""The validated trial configuration: a frozen dataclass built from Tune's ``config`` dict.

Every sweep validates every trial config it will run *before* Tune starts, so a typo or
an out-of-range value fails in seconds with a message naming the key and what is
allowed, not after an hour of other trials.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any

from trainables.augment import AUGMENTATIONS
from trainables.models import MODELS, get_spec

OPTIMIZERS = ("sgd", "adam")
AMP = ("auto", "none", "bf16", "fp16")
DATA_PLACEMENTS = ("auto", "device", "host")
LR_SCHEDULES = ("constant", "onecycle")
SELECT_BY = ("val_acc", "val_loss")
TRAIN_RULES = ("epoch", "check_and_adjust")


class ConfigError(ValueError):
    """A trial config key is unknown, of the wrong type, or out of range."""


@dataclass(frozen=True)
class TrialConfig:
    model: str
    optimizer: str
    lr: float
    epochs: int
    batch_size: int = 32
    momentum: float = 0.0  # the MNIST paper's SGD has none; its future work suggests adding it
    weight_decay: float = 0.0
    image_size: int = 224  # side of the square model input; data is resized per batch
    in_channels: int = 3  # model input channels; 1-channel data is repeated to 3
    seed: int = 0
    num_threads: int = 1  # torch intra-op threads of a CPU trial
    # None = by device: on for CUDA (NHWC is what tensor-core convolutions run on), off on
    # the CPU. True/False force it.
    channels_last: bool | None = None
    eval_batch_size: int = 256
    pretrained: bool = False
    weights_path: str | None = None  # a state_dict loaded on top (tensors that fit)
    weights_dir: str | None = None  # searched first for ImageNet weights (models.weights)
    label_smoothing: float = 0.0  # ChromosomeNet: 0.1
    lr_schedule: str = "constant"  # "onecycle": Smith's 1cycle, peak = lr, stepped per batch
    early_stop_patience: int = 0  # stop after this many epochs without a lower val_loss; 0 = off
    select_by: str = "val_acc"  # which validation metric picks the weights that get tested
    measure_inference: bool = False  # time inference per 1,000 test samples at the end
    dataset: str | None = None  # which of the sweep's datasets (sweeps over several)
    # a pooled dataset's split for this trial when it differs from the sweep's: "grouped"
    # for the leak-free twin of a cell a by-image preset runs (trainables.data.data_key)
    split: str | None = None
    label: str = ""  # the paper-table row this trial fills (MLflow run name, results)
    augment: str = "none"  # batch augmentation on the device: see trainables.augment
    # "epoch": the weights after each epoch are the candidates validation chooses from;
    # "check_and_adjust": ANet-c6's Algorithm 1 (trainables.rules) saves the candidates
    # and sets the lr every ``check_every`` steps.
    train_rule: str = "epoch"
    check_every: int = 200
    early_break: bool = False  # ANet-c6's early break (trainables.rules.EarlyBreak)
    early_break_val_acc: float = 0.0
    early_break_train_acc: float = 0.98
    early_break_batches: int = 5
    report_worst: int = 0  # report the N most confidently wrong test images
    # Mixed precision: "auto" = bf16 on CUDA GPUs that have it, else fp16 on CUDA (with a
    # GradScaler), none on the CPU; "bf16" also runs on the CPU (slower there).
    amp: str = "auto"
    compile: bool = False  # torch.compile the model (slower than eager on this project's CPU)
    # Where the uint8 splits live on a GPU trial: "auto" = on the GPU if they take at most
    # half its free memory, else in host memory, each batch staged through pinned buffers.
    data_placement: str = "auto"
    # One fused kernel per optimizer step (torch's fused=True): ResNet-18's Adam step on
    # one CPU thread is ~5x faster, but the updates differ from the default loop's by
    # rounding (same algorithm), so it is off unless asked for.
    fused_optimizer: bool = False

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> TrialConfig:
        allowed = {f.name: f for f in fields(cls)}
        unknown = sorted(set(config) - set(allowed), key=str)  # key=str: a stray int key
        if unknown:
            raise ConfigError(
                f"unknown config key(s) {unknown}; allowed: {', '.join(sorted(allowed))}"
            )
        values = {}
        for name, value in config.items():
            values[name] = _coerce(name, value, allowed[name].type)
        missing = [
            f.name
            for f in fields(cls)
            if f.name not in values and f.default is MISSING and f.default_factory is MISSING
        ]
        if missing:
            raise ConfigError(f"missing config key(s) {missing}")
        cfg = cls(**values)
        cfg.check()
        return cfg

    def check(self) -> None:
        """Range checks; each error names the key, the value and the allowed range.

        Checked in a fixed order, so a config with several errors always names the same one.
        """
        self._check_optimization()
        self._check_loop()
        self._check_rules()
        self._check_runtime()

    def _check_optimization(self) -> None:
        if self.model not in MODELS:
            _bad("model", self.model, f"one of {', '.join(MODELS.names())}")
        if self.optimizer not in OPTIMIZERS:
            _bad("optimizer", self.optimizer, f"one of {', '.join(OPTIMIZERS)}")
        if not (0 < self.lr <= 1) or not math.isfinite(self.lr):
            _bad("lr", self.lr, "a number > 0 and <= 1")
        if not 0 <= self.momentum < 1:
            _bad("momentum", self.momentum, "0 <= momentum < 1")
        if not 0 <= self.weight_decay < math.inf:  # also refuses nan, which compares False
            _bad("weight_decay", self.weight_decay, "a finite number >= 0")

    def _check_loop(self) -> None:
        for key in ("epochs", "batch_size", "num_threads", "eval_batch_size"):
            if getattr(self, key) < 1:
                _bad(key, getattr(self, key), "an integer >= 1")
        if not 0 <= self.label_smoothing < 1:
            _bad("label_smoothing", self.label_smoothing, "0 <= label_smoothing < 1")
        if self.lr_schedule not in LR_SCHEDULES:
            _bad("lr_schedule", self.lr_schedule, f"one of {', '.join(LR_SCHEDULES)}")
        if self.select_by not in SELECT_BY:
            _bad("select_by", self.select_by, f"one of {', '.join(SELECT_BY)}")
        if self.early_stop_patience < 0:
            _bad("early_stop_patience", self.early_stop_patience, "an integer >= 0 (0 = off)")
        if self.augment not in AUGMENTATIONS:
            _bad("augment", self.augment, f"one of {', '.join(AUGMENTATIONS)}")

    def _check_rules(self) -> None:
        """The train rule, ANet-c6's early break and what the test report asks for."""
        if self.train_rule not in TRAIN_RULES:
            _bad("train_rule", self.train_rule, f"one of {', '.join(TRAIN_RULES)}")
        if self.train_rule == "check_and_adjust" and self.lr_schedule != "constant":
            _bad("lr_schedule", self.lr_schedule, "constant with train_rule check_and_adjust")
        if self.train_rule == "check_and_adjust" and self.select_by != "val_acc":
            # the paper picks the saved candidate with the highest validation accuracy
            _bad("select_by", self.select_by, "val_acc with train_rule check_and_adjust")
        for key in ("check_every", "early_break_batches"):
            if getattr(self, key) < 1:
                _bad(key, getattr(self, key), "an integer >= 1")
        for key in ("early_break_val_acc", "early_break_train_acc"):
            if not 0 <= getattr(self, key) < 1:
                _bad(key, getattr(self, key), "0 <= value < 1")
        if self.report_worst < 0:
            _bad("report_worst", self.report_worst, "an integer >= 0")

    def _check_runtime(self) -> None:
        if not 0 <= self.seed < 2**32:  # numpy's and scikit-learn's seeds raise otherwise
            _bad("seed", self.seed, "an integer 0..4294967295 (2**32 - 1)")
        if self.amp not in AMP:
            _bad("amp", self.amp, f"one of {', '.join(AMP)}")
        if self.data_placement not in DATA_PLACEMENTS:
            _bad("data_placement", self.data_placement, f"one of {', '.join(DATA_PLACEMENTS)}")
        if self.split not in (None, "grouped", "random"):
            _bad("split", self.split, "grouped, random or None (the sweep's split)")
        if self.in_channels not in (1, 3):
            _bad("in_channels", self.in_channels, "1 or 3")
        low = get_spec(self.model).min_input_size
        if not low <= self.image_size <= 1024:
            _bad("image_size", self.image_size, f"{low}..1024 for {self.model}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _bad(key: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"config key {key!r} = {value!r} is invalid; allowed: {allowed}")


def _coerce(name: str, value: Any, annotation: str) -> Any:
    """Accept the obvious types only: a string for lr is an error, not a silent cast."""
    ann = str(annotation)
    if value is None and "None" in ann:
        return None
    for prefix, coerce in _COERCIONS:
        if ann.startswith(prefix):
            return coerce(name, value)
    return value


def _as_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        _bad(name, value, "true or false")
    return value


def _as_int(name: str, value: Any) -> int:
    # 2.0 is an integer; nan and inf are not (int() of them raises, not ConfigError)
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not whole:
        _bad(name, value, "an integer")
    return int(value)


def _as_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        _bad(name, value, "a number")
    if isinstance(value, int) and not -1e308 < value < 1e308:  # float() would overflow
        _bad(name, value, "a number")
    return float(value)


def _as_str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        _bad(name, value, "a string")
    return value


# Tried in this order against the field's annotation string ("bool", "int | None", ...).
_COERCIONS = (("bool", _as_bool), ("int", _as_int), ("float", _as_float), ("str", _as_str))
