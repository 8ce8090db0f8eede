"""Training and evaluation loops: plain PyTorch, no Ray, so they also run on their own.

The data arrive as uint8 ``N x C x H x W`` tensors (shared, read-only); each batch is
converted to float, normalised, given the model's channel count and resized on the
trial's device. Keeping uint8 until the last moment is what lets a whole dataset sit in
shared memory (47 MB for MNIST) even when the model wants 224 px RGB (10 GB as float).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainables.augment import augment_batch
from trainables.config import TrialConfig
from trainables.datasets import DataSplits, ImageSet
from trainables.models import build_model, get_spec
from trainables.rules import CheckAndAdjust, EarlyBreak


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def as_tensors(s: ImageSet, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-copy views of the shared arrays on CPU; one upload of uint8 data on a GPU."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # object-store arrays are read-only
        x, y = torch.from_numpy(s.images), torch.from_numpy(s.labels)
    return x.to(device), y.to(device)


def make_preprocess(
    mean: tuple[float, ...],
    std: tuple[float, ...],
    *,
    image_size: int,
    in_channels: int,
    channels_last: bool,
    device: torch.device,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 batch -> normalised float batch of the model's shape, on ``device``."""
    m = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=device).view(1, -1, 1, 1)

    def prep(x: torch.Tensor) -> torch.Tensor:
        x = (x.to(device, non_blocking=True).float().div_(255) - m) / s
        if x.shape[1] != in_channels:
            x = x.expand(-1, in_channels, -1, -1)  # grey -> RGB by repetition
        if x.shape[-1] != image_size or x.shape[-2] != image_size:
            x = F.interpolate(
                x, size=(image_size, image_size), mode="bilinear", align_corners=False
            )
        return x.contiguous(
            memory_format=torch.channels_last if channels_last else torch.contiguous_format
        )

    return prep


def classification_loss(
    out, y: torch.Tensor, aux_weight: float, label_smoothing: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss to optimise, main-head loss, main logits).

    Auxiliary heads (GoogLeNet in training mode) add ``aux_weight`` x their loss to what is
    optimised; the main-head loss is what gets reported, so ``train_loss`` and
    ``val_loss`` measure the same thing.
    """
    logits, *aux = out if isinstance(out, tuple) else (out,)
    main = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    total = main
    for a in aux:
        if a is not None:
            total = total + aux_weight * F.cross_entropy(a, y, label_smoothing=label_smoothing)
    return total, main, logits


def build_optimizer(cfg: TrialConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


@dataclass
class EvalResult:
    loss: float
    acc: float
    confusion: np.ndarray  # true x predicted counts
    pred: np.ndarray | None = None  # per sample, when asked for
    confidence: np.ndarray | None = None  # softmax probability of the predicted class


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int,
    prep: Callable,
    num_classes: int,
    predictions: bool = False,
) -> EvalResult:
    model.eval()
    total_loss = 0.0
    conf = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=y.device)
    preds, confs = [], []
    for i in range(0, len(y), batch_size):
        xb, yb = prep(x[i : i + batch_size]), y[i : i + batch_size]
        logits = model(xb)
        total_loss += F.cross_entropy(logits, yb, reduction="sum").item()
        pred = logits.argmax(1)
        conf += torch.bincount(yb * num_classes + pred, minlength=num_classes * num_classes)
        if predictions:
            preds.append(pred.cpu())
            confs.append(logits.softmax(1).max(1).values.float().cpu())
    conf_np = conf.view(num_classes, num_classes).cpu().numpy()
    n = max(1, len(y))
    res = EvalResult(total_loss / n, float(np.trace(conf_np)) / n, conf_np)
    if predictions and preds:
        res.pred, res.confidence = torch.cat(preds).numpy(), torch.cat(confs).numpy()
    return res


class Run:
    """One training run: model, optimizer, shuffling RNG and best weights, checkpointable.

    Stateful on purpose: a Tune trial and a benchmark drive it one epoch at a time and
    checkpoint between epochs; everything needed to resume bit-for-bit is in
    ``state_dict`` (weights, optimizer, both RNGs, epoch, best weights).
    """

    def __init__(self, cfg: TrialConfig, data: DataSplits, device: torch.device | None = None):
        self.cfg, self.data = cfg, data
        self.device = device or pick_device()
        if self.device.type == "cpu":
            torch.set_num_threads(cfg.num_threads)
        torch.manual_seed(cfg.seed)
        self.model = build_model(
            cfg.model,
            num_classes=data.num_classes,
            in_channels=cfg.in_channels,
            image_size=cfg.image_size,
            pretrained=cfg.pretrained,
            weights_path=cfg.weights_path,
        )
        fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.model.to(self.device, memory_format=fmt)
        self.optimizer = build_optimizer(cfg, self.model.parameters())
        self.aux_weight = get_spec(cfg.model).aux_loss_weight
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.prep = make_preprocess(
            data.mean,
            data.std,
            image_size=cfg.image_size,
            in_channels=cfg.in_channels,
            channels_last=cfg.channels_last,
            device=self.device,
        )
        self.train_xy = as_tensors(data.train, self.device)
        self.val_xy = as_tensors(data.val, self.device)
        self.steps_per_epoch = len(data.train) // cfg.batch_size + (
            len(data.train) % cfg.batch_size >= 2  # a last batch of one sample is skipped
        )
        self.scheduler = (
            torch.optim.lr_scheduler.OneCycleLR(
                self.optimizer, max_lr=cfg.lr, total_steps=cfg.epochs * self.steps_per_epoch
            )
            if cfg.lr_schedule == "onecycle"
            else None
        )
        # Augmentation draws from its own generator, so turning it on does not change
        # the shuffling order, and its state is checkpointed like the others.
        self.aug_gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.rule = CheckAndAdjust(cfg.lr) if cfg.train_rule == "check_and_adjust" else None
        self.early_break = (
            EarlyBreak(cfg.early_break_val_acc, cfg.early_break_train_acc, cfg.early_break_batches)
            if cfg.early_break
            else None
        )
        self.step = 0  # optimizer steps so far
        self.saves = 0  # check-and-adjust candidates saved
        self.stop_reason = ""  # "patience" or "early_break" once a rule ends the run
        self.epoch = 0
        self.best_val_acc = -1.0
        self.best_val_loss = float("inf")
        self.best_epoch = 0
        self.epochs_without_better_loss = 0
        self.best_model: dict[str, torch.Tensor] | None = None

    @property
    def early_stopped(self) -> bool:
        """A stopping rule ended the run: patience (val_loss has not fallen for
        ``early_stop_patience`` epochs) or ANet-c6's early break."""
        return bool(self.stop_reason)

    def _validate(self) -> EvalResult:
        return evaluate(
            self.model,
            *self.val_xy,
            batch_size=self.cfg.eval_batch_size,
            prep=self.prep,
            num_classes=self.data.num_classes,
        )

    def _keep_if_best(self, val: EvalResult, epoch: int) -> bool:
        better = (
            val.loss < self.best_val_loss
            if self.cfg.select_by == "val_loss"
            else val.acc > self.best_val_acc
        )
        if better:
            self.best_val_acc, self.best_epoch = val.acc, epoch
            self.best_model = {
                k: v.detach().clone().cpu() for k, v in self.model.state_dict().items()
            }
        return better

    def _check_and_adjust(self, batch_acc: float) -> None:
        """Algorithm 1 at this step; a saved candidate is scored on validation at once."""
        lr, need_save = self.rule.check(batch_acc)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if need_save:
            self.saves += 1
            self._keep_if_best(self._validate(), self.epoch + 1)  # during epoch + 1
            self.model.train()

    def train_epoch(self) -> dict[str, float]:
        """One pass over the training split, then validation; returns the epoch's metrics."""
        x, y = self.train_xy
        bs = self.cfg.batch_size
        perm = torch.randperm(len(y), generator=self.gen).to(self.device)
        self.model.train()
        loss_sum = correct = seen = 0.0
        t0 = time.perf_counter()
        for i in range(0, len(y), bs):
            idx = perm[i : i + bs]
            if len(idx) < 2:  # batch-norm cannot train on a single sample
                continue
            xb, yb = self.prep(x[idx]), y[idx]
            if self.cfg.augment != "none":
                xb = augment_batch(xb, self.cfg.augment, self.aug_gen)
            loss, main_loss, logits = classification_loss(
                self.model(xb), yb, self.aux_weight, self.cfg.label_smoothing
            )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.step += 1
            if self.scheduler is not None:
                self.scheduler.step()
            # .item() is a device sync; once per batch is cheap next to the step itself
            n_right = (logits.argmax(1) == yb).sum().item()
            loss_sum += main_loss.item() * len(idx)
            correct += n_right
            seen += len(idx)
            if self.early_break is not None:
                self.early_break.batch(n_right / len(idx))
            if self.rule is not None and (self.step - 1) % self.cfg.check_every == 0:
                self._check_and_adjust(n_right / len(idx))
        seconds = time.perf_counter() - t0
        self.epoch += 1
        val = self._validate()
        better_loss = val.loss < self.best_val_loss
        self.epochs_without_better_loss = 0 if better_loss else self.epochs_without_better_loss + 1
        # Candidates: every epoch's weights, or (check and adjust) the saved ones plus the
        # paper's unconditional save every 10 epochs.
        if self.rule is None or self.epoch % 10 == 0:
            self._keep_if_best(val, self.epoch)
        self.best_val_loss = min(self.best_val_loss, val.loss)
        p = self.cfg.early_stop_patience
        if p > 0 and self.epochs_without_better_loss >= p:
            self.stop_reason = "patience"
        elif self.early_break is not None and self.early_break.epoch_end(val.acc):
            self.stop_reason = "early_break"
        return {
            "epoch": self.epoch,
            "train_loss": loss_sum / max(1, seen),
            "train_acc": correct / max(1, seen),
            "val_loss": val.loss,
            "val_acc": val.acc,
            "lr": self.optimizer.param_groups[0]["lr"],
            "images_per_s": seen / seconds if seconds > 0 else 0.0,
            "step": self.step,
        }

    def test_best(self, predictions: bool = False) -> EvalResult:
        """Evaluate the best-validation weights on the test split (the only use of test)."""
        if self.best_model is not None:
            self.model.load_state_dict(self.best_model)
        x, y = as_tensors(self.data.test, self.device)
        return evaluate(
            self.model,
            x,
            y,
            batch_size=self.cfg.eval_batch_size,
            prep=self.prep,
            num_classes=self.data.num_classes,
            predictions=predictions,
        )

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "best_val_acc": self.best_val_acc,
            "best_epoch": self.best_epoch,
            "best_val_loss": self.best_val_loss,
            "epochs_without_better_loss": self.epochs_without_better_loss,
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "best_model": self.best_model,
            "torch_rng": torch.get_rng_state(),
            "shuffle_rng": self.gen.get_state(),
            "augment_rng": self.aug_gen.get_state(),
            "step": self.step,
            "saves": self.saves,
            "stop_reason": self.stop_reason,
            "rule": None if self.rule is None else self.rule.state_dict(),
            "early_break": None if self.early_break is None else self.early_break.state_dict(),
            "config": self.cfg.to_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = int(state["epoch"])
        self.best_val_acc = float(state["best_val_acc"])
        self.best_epoch = int(state["best_epoch"])
        self.best_val_loss = float(state["best_val_loss"])
        self.epochs_without_better_loss = int(state["epochs_without_better_loss"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.best_model = state["best_model"]
        torch.set_rng_state(state["torch_rng"])
        self.gen.set_state(state["shuffle_rng"])
        self.aug_gen.set_state(state["augment_rng"])
        self.step, self.saves = int(state["step"]), int(state["saves"])
        self.stop_reason = state["stop_reason"]
        if self.rule is not None:
            self.rule.load_state_dict(state["rule"])
        if self.early_break is not None:
            self.early_break.load_state_dict(state["early_break"])


CHECKPOINT_FILE = "checkpoint.pt"


def save_checkpoint(run: Run, folder) -> None:
    torch.save(run.state_dict(), f"{folder}/{CHECKPOINT_FILE}")


def load_checkpoint(folder) -> dict:
    # weights_only=True: a checkpoint is data, never code to unpickle.
    return torch.load(f"{folder}/{CHECKPOINT_FILE}", map_location="cpu", weights_only=True)
