"""The GPU path of the engine: mixed precision, loss scaling, torch.compile checkpoints,
where the data lives, GPU metrics.

Most of it is plumbing that runs on the CPU too (bf16 autocast, an fp16 GradScaler, a
compiled model, the placement decision with made-up sizes, the pinned-buffer stager with
plain buffers), so it is tested here; the few tests that need CUDA are skipped without
one and are meant for a GPU machine.
"""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch

import trainables.engine as engine
from trainables.config import ConfigError, TrialConfig
from trainables.data import load_splits
from trainables.engine import (
    Run,
    StagedBatches,
    choose_placement,
    data_fits_on_device,
    load_checkpoint,
    resolve_amp,
    save_checkpoint,
)
from trainables.models import build_model

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")


def synthetic(**limits):
    return load_splits("synthetic", val_fraction=0.25, seed=0, **limits)


def cfg(**kw) -> TrialConfig:
    base = {
        "model": "simple_cnn",
        "optimizer": "adam",
        "lr": 0.001,
        "epochs": 3,
        "image_size": 32,
        "batch_size": 32,
    }
    return TrialConfig.from_dict({**base, **kw})


def logits_dtype(run: Run) -> torch.dtype:
    """The dtype the model's last layer produces inside the training autocast."""
    seen = []
    last = [m for m in run.model.modules() if isinstance(m, torch.nn.Linear)][-1]
    handle = last.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    try:
        x, _ = run.train_xy
        with engine.autocast(run.device, run.amp_dtype):
            run.forward(run.prep(x[:4]))
    finally:
        handle.remove()
    return seen[0]


# ----------------------------------------------------------------------- config and amp


def test_amp_defaults_leave_cpu_trials_in_fp32():
    c = cfg()
    assert c.amp == "auto" and c.compile is False and c.channels_last is None
    assert c.data_placement == "auto" and c.fused_optimizer is False
    assert resolve_amp("auto", CPU) is None and resolve_amp("none", CUDA) is None
    assert resolve_amp("bf16", CPU) is torch.bfloat16
    assert resolve_amp("fp16", CUDA) is torch.float16


@pytest.mark.parametrize(("has_bf16", "dtype"), [(True, torch.bfloat16), (False, torch.float16)])
def test_auto_amp_on_cuda_is_bf16_where_the_gpu_has_it(monkeypatch, has_bf16, dtype):
    asked = {}

    def fake(including_emulation=True):
        asked["emulation"] = including_emulation
        return has_bf16

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", fake)
    assert resolve_amp("auto", CUDA) is dtype
    assert asked["emulation"] is False  # emulated bf16 (pre-Ampere) is slow: use fp16


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"amp": "fp8"}, "'amp' = 'fp8' is invalid; allowed: one of auto, none, bf16, fp16"),
        ({"amp": True}, "'amp' = True is invalid; allowed: a string"),
        ({"compile": "yes"}, "'compile' = 'yes' is invalid; allowed: true or false"),
        ({"data_placement": "gpu"}, "allowed: one of auto, device, host"),
        ({"fused_optimizer": 1}, "'fused_optimizer' = 1 is invalid; allowed: true or false"),
        ({"channels_last": "auto"}, "'channels_last' = 'auto' is invalid; allowed: true or"),
    ],
)
def test_gpu_config_keys_are_validated(change, needle):
    with pytest.raises(ConfigError) as err:
        cfg(**change)
    assert needle in str(err.value)


def test_bf16_autocast_trains_on_cpu():
    run = Run(cfg(amp="bf16"), synthetic(), CPU)
    assert run.amp_dtype is torch.bfloat16 and not run.scaler.is_enabled()
    assert logits_dtype(run) is torch.bfloat16
    epochs = [run.train_epoch() for _ in range(3)]
    losses = [m["train_loss"] for m in epochs]
    assert all(math.isfinite(v) for v in losses) and math.isfinite(epochs[-1]["val_loss"])
    assert losses[-1] < losses[0] * 0.5, losses
    assert epochs[-1]["val_acc"] >= 0.9, epochs[-1]
    assert not any(k.startswith("gpu_") for k in epochs[-1])  # CPU: no GPU metrics at all


def test_fp16_grad_scaler_state_is_checkpointed_and_resume_is_exact(tmp_path):
    """fp16 autocast with a live GradScaler runs on the CPU too, so the scaler's
    checkpointing is tested for real: its scale survives, and resuming equals not stopping."""
    data = synthetic(train_limit=96, val_limit=32, test_limit=32)  # CPU fp16 is slow
    c = cfg(amp="fp16", epochs=2, image_size=16)
    straight = Run(c, data, CPU)
    assert straight.scaler.is_enabled() and logits_dtype(straight) is torch.float16
    a = [straight.train_epoch() for _ in range(2)]

    first = Run(c, data, CPU)
    b = [first.train_epoch()]
    assert first.state_dict()["scaler"]["scale"] == first.scaler.get_scale() > 0
    save_checkpoint(first, tmp_path)
    resumed = Run(c, data, CPU)
    resumed.load_state_dict(load_checkpoint(tmp_path))
    assert resumed.scaler.state_dict() == first.scaler.state_dict()
    b.append(resumed.train_epoch())
    for x, y in zip(a, b, strict=True):
        x.pop("images_per_s"), y.pop("images_per_s")
        assert x == y
    assert all(math.isfinite(m["train_loss"]) for m in a)

    first.scaler.update(new_scale=1024.0)  # not the initial 65536: really restored
    save_checkpoint(first, tmp_path)
    again = Run(c, data, CPU)
    again.load_state_dict(load_checkpoint(tmp_path))
    assert again.scaler.get_scale() == 1024.0


def test_disabled_scaler_and_old_checkpoints_load():
    """fp32 runs checkpoint an empty scaler state; checkpoints from before amp existed
    (no "scaler", no "cuda_rng" key) still load."""
    data = synthetic()
    run = Run(cfg(epochs=1), data, CPU)
    run.train_epoch()
    state = run.state_dict()
    assert state["scaler"] == {} and state["cuda_rng"] is None
    old = {k: v for k, v in state.items() if k not in ("scaler", "cuda_rng")}
    again = Run(cfg(epochs=1), data, CPU)
    again.load_state_dict(old)
    assert again.epoch == 1 and not again.scaler.is_enabled()


@pytest.mark.slow  # torch.compile builds C++ for forward, backward and eval: 20-30 s cold
def test_compiled_run_checkpoints_the_plain_module(tmp_path):
    data = synthetic(train_limit=32, val_limit=32, test_limit=32)
    run = Run(cfg(compile=True, epochs=1), data, CPU)
    assert run.forward is not run.model  # the compiled wrapper is what is called
    run.train_epoch()  # one step
    assert run.step == 1
    save_checkpoint(run, tmp_path)
    state = load_checkpoint(tmp_path)
    for key in ("model", "best_model"):
        assert not [k for k in state[key] if k.startswith("_orig_mod.")], key
    plain = build_model("simple_cnn", num_classes=data.num_classes, in_channels=3)
    plain.load_state_dict(state["model"])  # strict: same names, same shapes
    for k, v in run.model.state_dict().items():
        assert torch.equal(plain.state_dict()[k], v), k
    eager = Run(cfg(epochs=1), data, CPU)  # and an uncompiled run resumes from it
    eager.load_state_dict(state)
    assert eager.step == 1


# ------------------------------------------------------------------------ data placement


def test_placement_decision_with_made_up_sizes():
    gib = 2**30
    assert data_fits_on_device(10 * gib, 20 * gib)  # exactly the fraction: fits
    assert not data_fits_on_device(10 * gib + 1, 20 * gib)
    assert data_fits_on_device(10 * gib, 40 * gib, fraction=0.25)
    assert choose_placement("auto", CUDA, 47 * 2**20, free_bytes=70 * gib) == "device"
    assert choose_placement("auto", CUDA, 150 * gib, free_bytes=70 * gib) == "host"
    assert choose_placement("host", CUDA, 1, free_bytes=70 * gib) == "host"
    assert choose_placement("device", CUDA, 150 * gib, free_bytes=70 * gib) == "device"
    for choice in ("auto", "device", "host"):  # the CPU is the device: nothing to stage
        assert choose_placement(choice, CPU, 150 * gib, free_bytes=1) == "device"


def test_staged_batches_equal_indexing_and_do_not_alias():
    x = torch.arange(10 * 2 * 3 * 3, dtype=torch.uint8).view(10, 2, 3, 3)
    stage = StagedBatches(x, CPU, max_rows=4)
    idx = torch.tensor([7, 1, 4])
    first = stage(idx)
    assert torch.equal(first, x[idx])
    second = stage(slice(6, 10))
    assert torch.equal(second, x[6:10])
    third = stage(torch.tensor([0, 9]))  # reuses the first buffer
    assert torch.equal(third, x[[0, 9]])
    assert torch.equal(first, x[idx]) and torch.equal(second, x[6:10])  # still intact


def test_host_placement_trains_exactly_like_device_placement(monkeypatch):
    """The fallback for data too big for the GPU, forced on the CPU: batches come through
    StagedBatches for training, validation and test, and the numbers are identical."""
    data = synthetic()
    ref = Run(cfg(epochs=2, augment="flip_shift"), data, CPU)
    a = [ref.train_epoch() for _ in range(2)]
    ta = ref.test_best()
    monkeypatch.setattr(engine, "choose_placement", lambda *args, **kw: "host")
    staged = Run(cfg(epochs=2, augment="flip_shift"), data, CPU)
    assert staged.placement == "host" and isinstance(staged.train_fetch, StagedBatches)
    assert isinstance(staged.val_fetch, StagedBatches)
    b = [staged.train_epoch() for _ in range(2)]
    tb = staged.test_best()
    for x, y in zip(a, b, strict=True):
        x.pop("images_per_s"), y.pop("images_per_s")
        assert x == y
    assert (ta.loss, ta.acc) == (tb.loss, tb.acc)


# ---------------------------------------------------------------------------- on a GPU


@needs_gpu
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_cuda_amp_trains_with_gpu_metrics(amp):
    if amp == "bf16" and not torch.cuda.is_bf16_supported(including_emulation=False):
        pytest.skip("this GPU has no native bf16")
    run = Run(cfg(model="resnet18", amp=amp), synthetic(), CUDA)
    assert run.channels_last and run.placement == "device"  # the GPU defaults
    assert run.train_xy[0].is_cuda and run.train_xy[0].dtype == torch.uint8
    assert logits_dtype(run) is resolve_amp(amp, CUDA)
    assert run.scaler.is_enabled() == (amp == "fp16")
    epochs = [run.train_epoch() for _ in range(3)]
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    assert epochs[-1]["val_acc"] >= 0.9, epochs[-1]
    assert all(0 < m["gpu_mem_peak_mb"] < 80_000 for m in epochs)
    has_nvml = importlib.util.find_spec("pynvml") is not None
    assert ("gpu_util_pct" in epochs[-1]) == has_nvml
    if has_nvml:
        assert 0 <= epochs[-1]["gpu_util_pct"] <= 100


@needs_gpu
def test_cuda_host_placement_stages_through_pinned_memory():
    run = Run(cfg(model="resnet18", data_placement="host"), synthetic(), CUDA)
    assert run.placement == "host" and not run.train_xy[0].is_cuda and run.train_xy[1].is_cuda
    stage = run.train_fetch
    assert all(b.is_pinned() for b in stage.bufs)
    idx = torch.tensor([5, 0, 3])
    batches = [stage(idx), stage(idx + 1), stage(idx + 2)]  # cycles through both buffers
    for k, b in enumerate(batches):
        assert b.is_cuda and torch.equal(b.cpu(), run.train_xy[0][idx + k])
    epochs = [run.train_epoch() for _ in range(3)]
    assert epochs[-1]["val_acc"] >= 0.9, epochs[-1]
    assert run.test_best().acc >= 0.9


@needs_gpu
def test_cuda_checkpoint_resumes_with_scaler_and_device_rng(tmp_path):
    run = Run(cfg(amp="fp16", epochs=2), synthetic(), CUDA)
    run.train_epoch()
    save_checkpoint(run, tmp_path)
    state = load_checkpoint(tmp_path)
    assert state["scaler"]["scale"] > 0 and state["cuda_rng"] is not None
    resumed = Run(cfg(amp="fp16", epochs=2), synthetic(), CUDA)
    resumed.load_state_dict(state)
    assert resumed.scaler.get_scale() == run.scaler.get_scale()
    assert torch.equal(torch.cuda.get_rng_state(CUDA), state["cuda_rng"])
    assert math.isfinite(resumed.train_epoch()["train_loss"])
