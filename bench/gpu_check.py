"""One prepared check of the GPU path, in steps that ``bench/gpu_check.sh`` runs in order.

Nothing of the GPU path had run on a GPU when this was written, and a GPU is at hand only
for minutes at a time, so the whole check is one command that fits in 8 minutes on one
GPU (docs/gpu.md, "Checking the GPU path"). Each step is a subcommand with its own time
limit (set by the shell script) that leaves its outcome in a work folder, so a step that
fails or runs out of time costs only itself, and the last step still records what the
others measured:

  mode    ``gpu`` when torch sees CUDA and ``nvidia-smi`` exists, else ``cpu``; on ``cpu``
          the same steps run at tiny size as a dry run of this plumbing (nothing measured)
  tests   the tests that skip without CUDA, found by grep (``cuda.is_available``) and
          selected by their skip marker or a ``cuda`` parameter; on a GPU a skip fails
  sweep   the MNIST Table I sweep, ``paper`` preset (224 px, amp auto) on a subset, several
          trials sharing the GPU, while ``nvidia-smi`` is sampled every second
  ratio   training images/s of one trial inside Tune / the same engine run bare
  record  attribute the samples to trials, append one wide row with provenance to
          ``$CNNSWEEP_BENCH_DIR/gpu_check.parquet`` (bench/common.py), print the verdicts

    python -m bench.gpu_check {mode,tests,sweep,ratio,record} --work DIR [--mode gpu|cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from xml.etree import ElementTree

from bench.gpu_sampling import (
    Sampler,
    gpu_summary,
    memory_share,
    nvidia_smi_sample,
    per_trial,
    read_samples,
    steady,
)
from sweeps.results import write_text

REPO = Path(__file__).resolve().parents[1]
NAME = "gpu_check"
RATIO = "tune_over_bare_images_per_s"
RATIO_TARGET = ">= 0.7"
RUN_NAME = "gpu-check"
SWEEP_DIR = "mnist_optimizers"  # the sweep's folder under the results dir


@dataclass(frozen=True)
class Size:
    """How much each step runs: the GPU check, or the CPU dry run of its plumbing."""

    image_size: int  # px
    epochs: int
    train_limit: int  # images (stratified subsets; the paper preset has no limits)
    val_limit: int
    test_limit: int
    models: tuple[str, ...]
    optimizers: tuple[str, ...]
    lr: float
    gpus_per_trial: float
    cpus_per_trial: int
    ratio_model: str
    ratio_train_limit: int
    ratio_epochs: int
    ratio_repeats: int  # bare/tune pairs, in ABBA order


SIZES = {
    # ~4 min for the sweep step on one H200, sized from the pessimistic end of docs/gpu.md's
    # estimates (a VGG-16 trial sharing the GPU at ~500 img/s): 2 epochs x (12k train + 2k
    # val) + 2k test = 30k images a trial, ~60 s at 500 img/s, ~15 s at 2,000. The three
    # Table I models, not both optimizers: the models differ on a GPU (VGG-16's memory, no
    # batch norm; GoogLeNet's aux heads), the optimizers do not; SGD at lr 0.001 is a
    # published cell of each (the baseline rows). 0.25 GPU each: the three run at once
    # (a trial at batch 32 cannot fill an H200), one quarter left over. 2 CPUs each: 6 of
    # 16 cores, room for Ray and the sampler. 2 epochs: the first pays cuDNN's autotuning
    # and CUDA's lazy start, the second is steady.
    "gpu": Size(224, 2, 12000, 2000, 2000, ("vgg16", "googlenet", "resnet18"), ("sgd",), 0.001,
                0.25, 2, "resnet18", 4000, 3, 2),
    # the same steps on 2 CPU cores in well under 3 minutes: 32 px, 256 images, 2 trials
    "cpu": Size(32, 2, 256, 128, 128, ("resnet18",), ("sgd", "adam"), 0.001,
                0.0, 1, "resnet18", 256, 2, 1),
}  # fmt: skip


def write_json(path: Path, obj: dict) -> None:
    write_text(json.dumps(obj, indent=1, default=str), path)  # atomic, as every table


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


# ------------------------------------------------------------------------------ mode


def detect_mode() -> tuple[str, str]:
    """("gpu", what) when torch sees CUDA and nvidia-smi exists, else ("cpu", why not)."""
    import torch

    smi = shutil.which("nvidia-smi")
    if torch.cuda.is_available() and smi:
        return "gpu", f"{torch.cuda.get_device_name(0)} (torch {torch.__version__})"
    why = "torch.cuda.is_available() is False" if not torch.cuda.is_available() else ""
    why = ", ".join(w for w in (why, "" if smi else "no nvidia-smi on PATH") if w)
    return "cpu", why


# ----------------------------------------------------------------------------- tests


def cuda_test_files() -> list[str]:
    """Test files that hold CUDA-only tests: those that ask ``cuda.is_available``."""
    tests = sorted((REPO / "tests").glob("test_*.py"))
    return [str(p.relative_to(REPO)) for p in tests if "cuda.is_available" in p.read_text()]


def pytest_collection_modifyitems(config, items) -> None:
    """Loaded with ``-p bench.gpu_check``: keep only the tests that need CUDA, i.e. those
    with a skipif whose reason names a GPU, or a parameter that is the CUDA device (the
    ``cuda`` cases exist only where CUDA does). Selecting by the marker, not by name,
    keeps a new CUDA test in the check without editing this."""
    keep, drop = [], []
    for item in items:
        reasons = [str(m.kwargs.get("reason", "")) for m in item.iter_markers("skipif")]
        params = getattr(getattr(item, "callspec", None), "params", {})
        on_cuda = any(str(v).startswith("cuda") for v in params.values())
        (keep if on_cuda or any("gpu" in r.lower() for r in reasons) else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = keep


def junit_counts(xml: Path) -> dict:
    """Passed, failed, skipped (with reasons) from pytest's JUnit XML."""
    out = {"passed": 0, "failed": 0, "skipped": 0, "skips": [], "failures": []}
    if not xml.exists():
        return out
    for case in ElementTree.parse(xml).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        skip = case.find("skipped")
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        if skip is not None:
            out["skipped"] += 1
            out["skips"].append(f"{name}: {skip.get('message')}")
        elif bad is not None:
            out["failed"] += 1
            out["failures"].append(f"{name}: {(bad.get('message') or '')[:300]}")
        else:
            out["passed"] += 1
    return out


def tests_step(work: Path, mode: str) -> int:
    """Run the CUDA-only tests (``-rs``: each skip and its reason printed). On a GPU the
    check passes only if they all ran and passed; on the CPU they are expected to skip."""
    files = cuda_test_files()
    xml = work / "tests.xml"
    cmd = [sys.executable, "-m", "pytest", *files, "-rs", "-q", "-p", "bench.gpu_check"]
    cmd += ["-p", "no:cacheprovider", f"--junitxml={xml}"]
    print("[tests]", " ".join(cmd[1:]), flush=True)
    t0 = time.perf_counter()
    rc = subprocess.run(cmd, cwd=REPO).returncode
    res = {"files": files, "pytest_rc": rc, "wall_s": time.perf_counter() - t0}
    res |= junit_counts(xml)
    if mode == "gpu":
        res["ok"] = rc == 0 and res["failed"] == 0 and res["skipped"] == 0 and res["passed"] > 0
    else:  # dry run: they were found, and every one of them skipped (no CUDA here)
        res["ok"] = rc == 0 and res["failed"] == 0 and res["skipped"] > 0
    write_json(work / "tests.json", res)
    print(
        f"[tests] {res['passed']} passed, {res['failed']} failed, {res['skipped']} skipped"
        f" -> {'ok' if res['ok'] else 'FAILED'}",
        flush=True,
    )
    return 0 if res["ok"] else 1


# ----------------------------------------------------------------------------- sweep


def data_root() -> str:
    from bench.common import data_root as root

    return root(None)


def weights_flags(models: tuple[str, ...]) -> tuple[list[str], str]:
    """ImageNet weights where every model's file is here without a network, else from
    scratch: the GPU machine is offline, and a model whose file is missing would try a
    download first (a hang risk inside a timed step). The one file to be had offline is
    MobileNetV2's, which Table I does not use, so expect scratch unless
    $CNNSWEEP_WEIGHTS_DIR holds the Table I models' files."""
    from trainables.models import get_spec
    from trainables.models.weights import WEIGHTS_DIR_ENV, availability

    folder = os.environ.get(WEIGHTS_DIR_ENV)
    where = {
        m: availability(get_spec(m).imagenet, Path(folder) if folder else None) for m in models
    }
    missing = [m for m, a in where.items() if a["source"].startswith("none")]
    if not missing:
        flags = ["--weights", "imagenet"] + (["--weights-dir", folder] if folder else [])
        return flags, "imagenet: " + ", ".join(f"{m} {a['file']}" for m, a in where.items())
    return ["--weights", "scratch"], (
        f"scratch: no ImageNet file of {', '.join(missing)} here (${WEIGHTS_DIR_ENV} or the "
        "torch hub cache; the paper fine-tuned ImageNet weights, so accuracies are not the "
        "paper's experiment; throughput and memory are unaffected)"
    )


def sweep_argv(work: Path, size: Size, budget: str) -> tuple[list[str], str]:
    """The sweep's flags: the subset, resources, and everything it writes under ``work``."""
    weights, note = weights_flags(size.models)
    argv = ["--budget", budget, "--models", ",".join(size.models)]
    argv += ["--optimizers", ",".join(size.optimizers), "--lrs", f"{size.lr:g}"]
    argv += ["--epochs", str(size.epochs), "--seeds", "1", "--no-asha"]  # every trial ends
    argv += ["--gpus-per-trial", f"{size.gpus_per_trial:g}"]
    argv += ["--cpus-per-trial", str(size.cpus_per_trial)]
    argv += ["--data-root", data_root(), "--results-dir", str(work / "results")]
    argv += ["--storage-path", str(work / "ray"), "--name", RUN_NAME]
    # a SQLite file in the work folder: no MLflow server needed, nothing else touched
    argv += ["--tracking-uri", f"sqlite:///{work / 'mlflow.db'}", "--mlflow-wait", "5"]
    argv += ["--optuna-storage", f"sqlite:///{work / 'optuna.db'}", *weights]
    return argv, note


def sweep_step(work: Path, mode: str) -> int:
    """The Table I sweep, ``paper`` preset on the mode's subset, with the sampler on."""
    from sweeps.mnist_optimizers import SWEEP
    from sweeps.runner import main

    size = SIZES[mode]
    paper = SWEEP.budgets["paper"]
    # The paper preset (its weights recipe, batch 32, amp auto) with limits added: the sweep
    # has no data-limit flags, and 54k x 10 epochs at 224 px would not fit the 8 minutes.
    budget = replace(
        paper,
        name=f"paper_subset_{mode}",
        description=f"the paper preset on a subset ({NAME}, {mode})",
        image_size=size.image_size,
        train_limit=size.train_limit,
        val_limit=size.val_limit,
        test_limit=size.test_limit,
        seeds=1,
    )
    sweep = replace(SWEEP, budgets={budget.name: budget})
    argv, note = sweep_argv(work, size, budget.name)
    print(f"[sweep] weights: {note}", flush=True)
    print(
        f"[sweep] python sweeps/mnist_optimizers.py (budget {budget.name}) {' '.join(argv)}",
        flush=True,
    )
    source = nvidia_smi_sample if mode == "gpu" and shutil.which("nvidia-smi") else None
    write_json(
        work / "sweep.json",
        {
            "argv": argv,
            "weights": note,
            "budget": asdict(budget),
            "driver_pid": os.getpid(),
            "rc": None,
        },
    )
    t0 = time.perf_counter()
    with Sampler(work / "samples.jsonl", source):
        rc = main(sweep, argv)
    info = read_json(work / "sweep.json") | {"rc": rc, "wall_s": time.perf_counter() - t0}
    write_json(work / "sweep.json", info)
    return rc


def tune_results(storage: Path) -> dict[str, list[dict]]:
    """Every trial's reported results, from Tune's own ``result.json`` files (written as the
    trial reports, so they exist even if the step was stopped): {trial_id: [results]}."""
    out: dict[str, list[dict]] = {}
    for path in sorted(storage.glob(f"{RUN_NAME}/*/result.json")):
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                out.setdefault(r["trial_id"], []).append(r)
    return out


def budget_gpus(info: dict) -> float | None:
    argv = info.get("argv", [])
    return float(argv[argv.index("--gpus-per-trial") + 1]) if "--gpus-per-trial" in argv else None


# ----------------------------------------------------------------------------- ratio


def ratio_config(size: Size) -> dict:
    """The trial config both sides run: the sweep's (model, batch 32, image size, amp auto,
    channels_last by device), one of its trials."""
    return {
        "model": size.ratio_model,
        "optimizer": "sgd",
        "lr": size.lr,
        "epochs": size.ratio_epochs,
        "batch_size": 32,
        "image_size": size.image_size,
        "seed": 0,
        "num_threads": size.cpus_per_trial,
        "amp": "auto",
        "dataset": "mnist",
    }


def ratio_step(work: Path, mode: str) -> int:
    """Training images/s of one trial under Tune (alone, a whole GPU: ``--gpus-per-trial``
    1) vs the same config on the engine in a fresh process, ABBA order, steady epochs.
    Written after every pair, so a step stopped at its limit keeps the pairs it finished."""
    import ray

    from bench.tune_overhead import bare_in_fresh_process, tune_side
    from trainables.data import load_splits

    size = SIZES[mode]
    data = {
        "mnist": load_splits(
            "mnist",
            root=Path(data_root()),
            image_size=size.image_size,
            train_limit=size.ratio_train_limit,
            val_limit=500,
            test_limit=500,
        )
    }
    config = ratio_config(size)
    gpus = 1 if mode == "gpu" else 0
    res: dict = {"config": config, "gpus": gpus, "train_images": len(data["mnist"].train)}
    bare: list[dict] = []
    tuned: list[dict] = []
    ray.init(
        address="local",
        num_cpus=os.cpu_count() if mode == "gpu" else 2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
    )
    try:
        for rep in range(size.ratio_repeats):
            sides = ("bare", "tune") if rep % 2 == 0 else ("tune", "bare")
            for side in sides:
                if side == "bare":
                    bare += bare_in_fresh_process(config, data)[0]
                else:
                    tuned += tune_side(config, data, size.cpus_per_trial, gpus=gpus)[0]
            b, t = steady(bare), steady(tuned)
            res |= {"pairs": rep + 1, "bare": bare, "tune": tuned}
            res |= {"bare_images_per_s": b, "tune_images_per_s": t, "ratio": t / b}
            write_json(work / "ratio.json", res)
            print(
                f"[ratio] pair {rep + 1}: bare {b:.0f} img/s, tune {t:.0f} img/s, "
                f"{RATIO} = {t / b:.3f}",
                flush=True,
            )
    finally:
        ray.shutdown()
    return 0


# ---------------------------------------------------------------------------- record


def sweep_columns(work: Path) -> dict:
    """The sweep step's outcome: its trials (status from the trials table), per-trial
    throughput and memory, and the GPU samples."""
    info = read_json(work / "sweep.json") or {}
    results = tune_results(work / "ray")
    samples = read_samples(work / "samples.jsonl")
    trials, other = per_trial(results, samples, info.get("driver_pid"))
    table = work / "results" / SWEEP_DIR / "trials.parquet"
    status: dict = {}
    if table.exists():
        import pandas as pd

        t = pd.read_parquet(table)
        status = dict(zip(t["trial_id"], t["status"], strict=True))
        acc = dict(zip(t["trial_id"], t["test_acc"], strict=True))
        for tr in trials:
            tr |= {"status": status.get(tr["trial_id"]), "test_acc": acc.get(tr["trial_id"])}
    ips = [tr["images_per_s"] for tr in trials]
    peaks = [tr["gpu_mem_peak_mb"] for tr in trials if tr["gpu_mem_peak_mb"] is not None]
    budget = info.get("budget", {})
    terminated = sum(s == "TERMINATED" for s in status.values())
    return {
        "sweep_rc": info.get("rc"),
        "sweep_ok": info.get("rc") == 0 and bool(status) and terminated == len(status),
        "sweep_wall_s": info.get("wall_s"),
        "sweep_budget": budget.get("name"),
        "sweep_image_size": budget.get("image_size"),
        "sweep_train_images": budget.get("train_limit"),
        "sweep_weights": info.get("weights"),
        "sweep_trials": len(status),
        "sweep_terminated": terminated,
        "sweep_images_per_s_sum": sum(ips) if ips else None,  # the trials ran at once
        "sweep_images_per_s_min": min(ips) if ips else None,
        "gpu_mem_peak_mb_max": max(peaks) if peaks else None,
        **memory_share(trials, samples, budget_gpus(info)),
        **gpu_summary(samples),
        "trials": json.dumps(trials, default=str),
        "unattributed_gpu_processes": json.dumps(other),
        "sweep_argv": " ".join(info.get("argv", [])),
    }


def record_step(work: Path, mode: str) -> int:
    """One wide row: every step's outcome; the ratio is the row's headline. The verdicts
    are printed (a missed goal is a finding, not an error); the shell script's exit code
    comes from the steps themselves."""
    from bench.common import record

    tests = read_json(work / "tests.json") or {}
    ratio = read_json(work / "ratio.json") or {}
    row = {
        "mode": mode,
        "measured_on_gpu": mode == "gpu",
        "amp": amp_name(mode),
        "tests_ok": bool(tests.get("ok")),
        **{f"tests_{k}": tests.get(k) for k in ("passed", "failed", "skipped")},
        "tests_skips": json.dumps(tests.get("skips", [])),
        **sweep_columns(work),
        "ratio_model": (ratio.get("config") or {}).get("model"),
        "ratio_pairs": ratio.get("pairs", 0),
        "bare_images_per_s": ratio.get("bare_images_per_s"),
        "tune_images_per_s": ratio.get("tune_images_per_s"),
        "work_dir": str(work),
    }
    value = ratio.get("ratio", float("nan"))
    if mode != "gpu":
        print(
            f"[record] NO GPU: a CPU dry run of the plumbing; nothing here is a GPU figure "
            f"(row mode={mode}, measured_on_gpu=False)",
            flush=True,
        )
    record(NAME, row, RATIO, value, RATIO_TARGET)
    failed = [
        k
        for k, ok in (
            ("tests", row["tests_ok"]),
            ("sweep", row["sweep_ok"]),
            ("ratio", value == value),
        )
        if not ok
    ]
    print(verdicts(row, value, failed))
    return 0


def amp_name(mode: str) -> str:
    import torch

    from trainables.engine import resolve_amp

    dtype = resolve_amp("auto", torch.device("cuda" if mode == "gpu" else "cpu"))
    return "none" if dtype is None else str(dtype).removeprefix("torch.")


def _f(value, spec: str = ".0f") -> str:
    return "n/a" if value is None or value != value else format(value, spec)


def verdicts(row: dict, ratio: float, failed: list[str]) -> str:
    """The human summary: each figure beside its goal (docs/gpu.md)."""
    met = "n/a" if ratio != ratio else ("met" if ratio >= 0.7 else "MISSED")
    fits = {None: "n/a", True: "met", False: "MISSED"}[row["mem_fits_share"]]
    lines = [
        f"tests: {row['tests_passed']} passed, {row['tests_failed']} failed, "
        f"{row['tests_skipped']} skipped ({'ok' if row['tests_ok'] else 'FAILED'})",
        f"sweep: {row['sweep_terminated']}/{row['sweep_trials']} trials TERMINATED, "
        f"{_f(row['sweep_images_per_s_sum'])} img/s summed over concurrent trials (slowest "
        f"{_f(row['sweep_images_per_s_min'])}), engine peak {_f(row['gpu_mem_peak_mb_max'])} "
        f"MiB, GPU util mean {_f(row['gpu_util_mean_pct'])} % over {row['busy_samples']} of "
        f"{row['samples']} nvidia-smi samples",
        f"memory: most per trial {_f(row['mem_per_trial_max_mib'])} MiB, share "
        f"{_f(row['mem_share_mib'])} MiB, goal <= share {fits}",
        f"ratio: tune {_f(row['tune_images_per_s'])} / bare {_f(row['bare_images_per_s'])} "
        f"img/s = {_f(ratio, '.3f')}, goal >= 0.7 {met}",
        f"{NAME}: {'FAILED: ' + ', '.join(failed) if failed else 'all steps ran'}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("step", choices=("mode", "tests", "sweep", "ratio", "record"))
    p.add_argument("--work", type=Path, help="the check's work folder (steps' outcomes)")
    p.add_argument("--mode", choices=("gpu", "cpu"), help="from the mode step")
    args = p.parse_args(argv)
    if args.step == "mode":
        mode, what = detect_mode()
        print(what, file=sys.stderr)
        print(mode)
        return 0
    step = {"tests": tests_step, "sweep": sweep_step, "ratio": ratio_step}.get(args.step)
    return (step or record_step)(args.work.resolve(), args.mode)


if __name__ == "__main__":
    sys.exit(main())
