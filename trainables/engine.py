"""Training and evaluation loops: plain PyTorch, no Ray, so they also run on their own.

The data arrive as uint8 ``N x C x H x W`` tensors (shared, read-only); each batch is
converted to float, normalised, given the model's channel count and resized on the
trial's device. Keeping uint8 until the last moment is what lets a whole dataset sit in
shared memory (47 MB for MNIST) even when the model wants 224 px RGB (10 GB as float).

On a GPU (docs/gpu.md): the uint8 splits are uploaded once (or, when they would take more
than ``DATA_GPU_FRACTION`` of free GPU memory, stay in host memory and each batch is
staged through pinned buffers); forward and loss run under autocast (bf16, or fp16 with a
GradScaler); the layout is channels_last; ``torch.compile`` is an option.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainables.augment import augment_batch
from trainables.config import TrialConfig
from trainables.data import DataSplits, ImageSet
from trainables.models import build_model, get_spec
from trainables.rules import CheckAndAdjust, EarlyBreak

# A GPU trial keeps its uint8 splits on the GPU when they take at most this fraction of the
# memory still free once the model is there; the rest is for activations and cuDNN.
DATA_GPU_FRACTION = 0.5
UTIL_EVERY = 20  # training steps between GPU utilisation samples (NVML; no device sync)


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for config ``amp`` on ``device``; None = plain fp32.

    "auto": bf16 on CUDA GPUs with native bf16 (Ampere and later: no loss scaling needed),
    else fp16 on CUDA; none on the CPU, so CPU trials are unchanged.
    """
    if amp == "none" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "auto":
        bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
        return torch.bfloat16 if bf16 else torch.float16
    return torch.bfloat16 if amp == "bf16" else torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager:
    """Autocast to ``dtype`` on ``device``; a no-op context (the exact fp32 path) for None."""
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def data_fits_on_device(nbytes: int, free_bytes: int, fraction: float = DATA_GPU_FRACTION) -> bool:
    """Whether ``nbytes`` of uint8 images may live on a GPU with ``free_bytes`` free."""
    return nbytes <= fraction * free_bytes


def choose_placement(
    choice: str, device: torch.device, nbytes: int, free_bytes: int | None = None
) -> str:
    """Where a trial's uint8 images live: "device" or "host" (config ``data_placement``).

    A CPU trial always gets "device": the CPU is the device and the splits are zero-copy
    views of the shared arrays. ``free_bytes`` defaults to the GPU's free memory now.
    """
    if device.type == "cpu":
        return "device"
    if choice != "auto":
        return choice
    if free_bytes is None:
        free_bytes = torch.cuda.mem_get_info(device)[0]
    return "device" if data_fits_on_device(nbytes, free_bytes) else "host"


class StagedBatches:
    """Batches of a host-resident uint8 split, copied to a GPU without stalling the host.

    Each batch is gathered into one of ``slots`` page-locked buffers and copied with
    ``non_blocking=True``; a buffer is refilled only once the copy out of it has finished
    (a CUDA event), so gathering batch i + 1 overlaps the copy and compute of batch i. On
    a CPU device (tests) the buffers are plain memory and each batch is a copy.
    """

    def __init__(self, x: torch.Tensor, device: torch.device, max_rows: int, slots: int = 2):
        self.x, self.device = x, device
        self.pinned = device.type == "cuda"
        shape = (max_rows, *x.shape[1:])
        self.bufs = [
            torch.empty(shape, dtype=x.dtype, pin_memory=self.pinned) for _ in range(slots)
        ]
        self.copied: list[torch.cuda.Event | None] = [None] * slots
        self.next = 0

    def __call__(self, rows: torch.Tensor | slice) -> torch.Tensor:
        """The images at ``rows`` (CPU int64 indices, or a slice) on the device."""
        k, self.next = self.next, (self.next + 1) % len(self.bufs)
        if self.copied[k] is not None:
            self.copied[k].synchronize()  # waits for that one copy, not for the GPU's queue
        if isinstance(rows, slice):
            src = self.x[rows]
            buf = self.bufs[k][: len(src)]
            buf.copy_(src)
        else:
            buf = self.bufs[k][: len(rows)]
            torch.index_select(self.x, 0, rows, out=buf)
        out = buf.to(self.device, non_blocking=self.pinned, copy=True)
        if self.pinned:
            self.copied[k] = torch.cuda.Event()
            self.copied[k].record()
        return out


def gpu_utilization(device: torch.device) -> float | None:
    """Percent of the last NVML sample period a kernel ran on ``device``; None without
    pynvml (or where NVML cannot see the device)."""
    try:
        return float(torch.cuda.utilization(device))
    except Exception:  # ModuleNotFoundError without pynvml; NVMLError has no common base
        return None


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
    fused = True if cfg.fused_optimizer else None  # None: torch's default implementation
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, fused=fused
        )
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)


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
    amp_dtype: torch.dtype | None = None,
    fetch: Callable[[slice], torch.Tensor] | None = None,
) -> EvalResult:
    """Loss, accuracy and confusion matrix of ``model`` on (x, y), in batches.

    ``fetch`` takes a slice of ``x`` to the device (host-resident data, StagedBatches);
    by default ``x`` is already there. The loss is summed on the device in float64 (the
    same additions, in the same order, as Python floats), so there is no sync per batch.
    """
    model.eval()
    take = fetch or x.__getitem__
    total_loss = torch.zeros((), dtype=torch.float64, device=y.device)
    conf = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=y.device)
    preds, confs = [], []
    for i in range(0, len(y), batch_size):
        xb, yb = prep(take(slice(i, i + batch_size))), y[i : i + batch_size]
        with autocast(y.device, amp_dtype):
            logits = model(xb)
            total_loss += F.cross_entropy(logits, yb, reduction="sum").double()
        pred = logits.argmax(1)
        conf += torch.bincount(yb * num_classes + pred, minlength=num_classes * num_classes)
        if predictions:
            preds.append(pred.cpu())
            confs.append(logits.softmax(1).max(1).values.float().cpu())
    conf_np = conf.view(num_classes, num_classes).cpu().numpy()
    n = max(1, len(y))
    res = EvalResult(total_loss.item() / n, float(np.trace(conf_np)) / n, conf_np)
    if predictions and preds:
        res.pred, res.confidence = torch.cat(preds).numpy(), torch.cat(confs).numpy()
    return res


class _PassTotals:
    """Running sums of one training pass.

    The sums stay on the device (float64: the same additions as Python floats), so a GPU
    step has no sync point unless a rule needs the batch accuracy at once.
    """

    def __init__(self, device: torch.device) -> None:
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.correct = torch.zeros((), dtype=torch.int64, device=device)
        self.seen = 0
        self.util: list[float | None] = []  # GPU utilisation samples
        self.seconds = 0.0  # the pass's wall time, its last kernels included

    def add(self, main_loss: torch.Tensor, right: torch.Tensor, n: int) -> None:
        self.loss_sum += main_loss.detach().double() * n
        self.correct += right
        self.seen += n


class Run:
    """One training run: model, optimizer, shuffling RNG and best weights, checkpointable.

    Stateful on purpose: a Tune trial and a benchmark drive it one epoch at a time and
    checkpoint between epochs; everything needed to resume bit-for-bit is in
    ``state_dict`` (weights, optimizer, loss scaler, the RNGs, epoch, best weights).
    ``self.model`` is always the plain module (what is checkpointed); ``self.forward`` is
    what is called, the compiled module when ``compile`` is set.
    """

    def __init__(self, cfg: TrialConfig, data: DataSplits, device: torch.device | None = None):
        self.cfg, self.data = cfg, data
        self.device = device or pick_device()
        self._configure_device()
        torch.manual_seed(cfg.seed)  # the model's initial weights draw from it
        self._build_model()
        self._build_optimizer()
        # After the model: placement weighs the data against the GPU memory left beside it.
        self._place_data()
        # Shuffling and augmentation draw from generators of their own, so turning
        # augmentation on does not change the shuffling order; both are checkpointed.
        self.gen = torch.Generator().manual_seed(cfg.seed)
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

    def _configure_device(self) -> None:
        if self.device.type == "cpu":
            torch.set_num_threads(self.cfg.num_threads)
        if self.device.type == "cuda":
            # Input shapes are fixed, so cuDNN may time its algorithms once per shape and
            # keep the fastest (GPU runs are not bitwise reproducible anyway).
            torch.backends.cudnn.benchmark = True

    def _build_model(self) -> None:
        cfg = self.cfg
        self.model = build_model(
            cfg.model,
            num_classes=self.data.num_classes,
            in_channels=cfg.in_channels,
            image_size=cfg.image_size,
            pretrained=cfg.pretrained,
            weights_path=cfg.weights_path,
            weights_dir=cfg.weights_dir,
        )
        # channels_last (NHWC) is the layout tensor-core convolutions run in: on by default
        # on CUDA, off on the CPU unless the config says so.
        cuda = self.device.type == "cuda"
        self.channels_last = cuda if cfg.channels_last is None else cfg.channels_last
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        self.model.to(self.device, memory_format=fmt)
        self.forward: Callable = torch.compile(self.model) if cfg.compile else self.model
        self.aux_weight = get_spec(cfg.model).aux_loss_weight

    def _build_optimizer(self) -> None:
        """Optimizer, loss scaler and (1cycle) learning-rate schedule."""
        cfg = self.cfg
        self.amp_dtype = resolve_amp(cfg.amp, self.device)
        # fp16 needs loss scaling; bf16 has fp32's range and does not. Disabled, the scaler
        # passes calls straight through (the plain fp32 step).
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.amp_dtype == torch.float16
        )
        self.optimizer = build_optimizer(cfg, self.model.parameters())
        n = len(self.data.train)
        self.steps_per_epoch = n // cfg.batch_size + (
            n % cfg.batch_size >= 2  # a last batch of one sample is skipped
        )
        self.scheduler = (
            torch.optim.lr_scheduler.OneCycleLR(
                self.optimizer, max_lr=cfg.lr, total_steps=cfg.epochs * self.steps_per_epoch
            )
            if cfg.lr_schedule == "onecycle"
            else None
        )

    def _place_data(self) -> None:
        """The per-batch preprocessing, and the train/val splits where they will be read."""
        data = self.data
        self.prep = make_preprocess(
            data.mean,
            data.std,
            image_size=self.cfg.image_size,
            in_channels=self.cfg.in_channels,
            channels_last=self.channels_last,
            device=self.device,
        )
        nbytes = sum(s.images.nbytes for s in (data.train, data.val, data.test))
        self.placement = choose_placement(self.cfg.data_placement, self.device, nbytes)
        *self.train_xy, self.train_fetch = self._put(data.train)
        *self.val_xy, self.val_fetch = self._put(data.val)
        # GPU metrics per epoch: peak memory always, utilisation where pynvml is installed.
        self.gpu_util = self.device.type == "cuda" and gpu_utilization(self.device) is not None

    def _put(self, s: ImageSet) -> tuple[torch.Tensor, torch.Tensor, StagedBatches | None]:
        """A split's (images, labels, stager): all on the device, or (placement "host")
        images left in host memory with a StagedBatches that brings batches over."""
        if self.placement == "device":
            return (*as_tensors(s, self.device), None)
        x, y = as_tensors(s, torch.device("cpu"))
        rows = max(self.cfg.batch_size, self.cfg.eval_batch_size)
        return x, y.to(self.device), StagedBatches(x, self.device, rows)

    @property
    def early_stopped(self) -> bool:
        """A stopping rule ended the run: patience (val_loss has not fallen for
        ``early_stop_patience`` epochs) or ANet-c6's early break."""
        return bool(self.stop_reason)

    def _validate(self) -> EvalResult:
        return evaluate(
            self.forward,
            *self.val_xy,
            batch_size=self.cfg.eval_batch_size,
            prep=self.prep,
            num_classes=self.data.num_classes,
            amp_dtype=self.amp_dtype,
            fetch=self.val_fetch,
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
            self.forward.train()

    def train_epoch(self, progress=None) -> dict[str, float]:
        """One pass over the training split, then validation; returns the epoch's metrics.

        ``progress``: an object with ``update(images)`` and ``close()`` told of every batch
        (``trainables.progress.EpochBar``: a bar for epochs long enough to watch)."""
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        totals = self._train_pass(progress)
        self.epoch += 1
        val = self._validate()
        self._end_epoch(val)
        return self._epoch_metrics(totals, val)

    def _train_pass(self, progress) -> _PassTotals:
        """The optimizer steps of one shuffled pass over the training split."""
        x, y = self.train_xy
        bs = self.cfg.batch_size
        perm = torch.randperm(len(y), generator=self.gen)
        perm_dev = perm.to(self.device)  # the same tensor on a CPU trial
        self.forward.train()
        totals = _PassTotals(self.device)
        t0 = time.perf_counter()
        for i in range(0, len(y), bs):
            idx = perm_dev[i : i + bs]
            if len(idx) < 2:  # batch-norm cannot train on a single sample
                continue
            fetched = x[idx] if self.train_fetch is None else self.train_fetch(perm[i : i + bs])
            main_loss, right = self._train_step(self.prep(fetched), y[idx])
            totals.add(main_loss, right, len(idx))
            self._after_step(right, len(idx), totals.util)
            if progress is not None:
                progress.update(len(idx))
        if progress is not None:
            progress.close()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # the epoch's time includes its last kernels
        totals.seconds = time.perf_counter() - t0
        return totals

    def _train_step(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on a batch; returns (main-head loss, correct predictions)."""
        if self.cfg.augment != "none":
            xb = augment_batch(xb, self.cfg.augment, self.aug_gen)
        with autocast(self.device, self.amp_dtype):
            loss, main_loss, logits = classification_loss(
                self.forward(xb), yb, self.aux_weight, self.cfg.label_smoothing
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)  # skipped by fp16's scaler if grads overflowed
        self.scaler.update()
        self.step += 1
        if self.scheduler is not None:
            self.scheduler.step()
        return main_loss, (logits.argmax(1) == yb).sum()

    def _after_step(self, right: torch.Tensor, n: int, util: list) -> None:
        """The per-step rules (early break, check and adjust) and GPU utilisation samples."""
        if self.early_break is not None:
            self.early_break.batch(right.item() / n)  # .item(): a device sync
        if self.rule is not None and (self.step - 1) % self.cfg.check_every == 0:
            self._check_and_adjust(right.item() / n)
        if self.gpu_util and self.step % UTIL_EVERY == 0:
            util.append(gpu_utilization(self.device))

    def _end_epoch(self, val: EvalResult) -> None:
        """Keep the epoch's weights if they are the best candidate; apply stopping rules."""
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

    def _epoch_metrics(self, totals: _PassTotals, val: EvalResult) -> dict[str, float]:
        seen, seconds = totals.seen, totals.seconds
        metrics = {
            "epoch": self.epoch,
            "train_loss": totals.loss_sum.item() / max(1, seen),
            "train_acc": totals.correct.item() / max(1, seen),
            "val_loss": val.loss,
            "val_acc": val.acc,
            "lr": self.optimizer.param_groups[0]["lr"],
            "images_per_s": seen / seconds if seconds > 0 else 0.0,
            "step": self.step,
        }
        if self.device.type == "cuda":  # GPU trials only: CPU metrics keep their names
            metrics["gpu_mem_peak_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
            if self.gpu_util:
                util = [u for u in (*totals.util, gpu_utilization(self.device)) if u is not None]
                if util:
                    metrics["gpu_util_pct"] = float(np.mean(util))
        return metrics

    def test_best(self, predictions: bool = False) -> EvalResult:
        """Evaluate the best-validation weights on the test split (the only use of test)."""
        if self.best_model is not None:
            self.model.load_state_dict(self.best_model)
        x, y, fetch = self._put(self.data.test)
        return evaluate(
            self.forward,
            x,
            y,
            batch_size=self.cfg.eval_batch_size,
            prep=self.prep,
            num_classes=self.data.num_classes,
            predictions=predictions,
            amp_dtype=self.amp_dtype,
            fetch=fetch,
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
            # dropout on a GPU draws from the device's generator
            "cuda_rng": (
                torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
            ),
            "scaler": self.scaler.state_dict(),  # {} unless fp16
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
        if state.get("cuda_rng") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        if state.get("scaler"):  # {} or absent unless fp16: the fresh scaler is the right one
            self.scaler.load_state_dict(state["scaler"])
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
