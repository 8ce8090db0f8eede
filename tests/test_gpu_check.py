"""bench/gpu_check.sh, the one command that checks the GPU path on a GPU machine.

Here (no GPU) it must say that nothing was measured and dry-run its own plumbing on the
CPU; the end-to-end test checks that dry run by its outputs, with CUDA hidden so it is the
dry run on any machine. The sampler's parsing and the per-trial attribution, which only a
GPU exercises for real, are tested on canned ``nvidia-smi`` output.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from bench import gpu_check as gc
from bench import gpu_sampling as gs

REPO = Path(__file__).resolve().parents[1]


def test_nvidia_smi_csv_parsing_tolerates_na_and_noise():
    gpus = gs.parse_gpu_csv("0, 87, 40321, 143771\n1, [N/A], [N/A], 143771\n")
    assert gpus == [
        {"index": 0, "util_pct": 87.0, "used_mib": 40321.0, "total_mib": 143771.0},
        {"index": 1, "util_pct": None, "used_mib": None, "total_mib": 143771.0},
    ]
    assert gs.parse_apps_csv("1234, 2048\n99, [N/A]\n") == [
        {"pid": 1234, "used_mib": 2048.0},
        {"pid": 99, "used_mib": None},
    ]
    assert gs.parse_apps_csv("") == [] and gs.parse_apps_csv("No running processes found") == []


def test_samples_are_attributed_to_trials_by_pid():
    results = {
        "t0": [
            {"trial_id": "t0", "pid": 11, "epoch": 1, "images_per_s": 100.0,
             "gpu_mem_peak_mb": 900.0, "config": {"model": "vgg16", "optimizer": "sgd"}},
            {"trial_id": "t0", "pid": 11, "epoch": 2, "images_per_s": 300.0,
             "gpu_mem_peak_mb": 950.0, "config": {"model": "vgg16", "optimizer": "sgd"}},
        ],
        "t1": [{"trial_id": "t1", "pid": 12, "epoch": 1, "images_per_s": 50.0,
                "config": {"model": "resnet18", "optimizer": "adam"}}],
    }  # fmt: skip
    gpu = [{"index": 0, "util_pct": 50.0, "used_mib": 3000.0, "total_mib": 8e4}]
    samples = [
        {"t": 0, "gpus": gpu, "apps": []},  # before the trials: not in the busy window
        {"t": 1, "gpus": gpu, "apps": [{"pid": 11, "used_mib": 1200.0}]},
        {"t": 2, "gpus": [{**gpu[0], "util_pct": 90.0}],
         "apps": [{"pid": 11, "used_mib": 1500.0}, {"pid": 7, "used_mib": 500.0},
                  {"pid": 12, "used_mib": None}]},
        {"t": 3, "error": "nvidia-smi timed out"},
    ]  # fmt: skip
    trials, other = gs.per_trial(results, samples, driver_pid=7)
    t0, t1 = trials
    assert t0["model"] == "vgg16" and t0["epochs"] == 2 and t0["pids"] == [11]
    assert t0["images_per_s"] == 300.0  # steady: epochs after the first
    assert t0["images_per_s_epoch1"] == 100.0 and t0["gpu_mem_peak_mb"] == 950.0
    assert t0["nvsmi_used_mib_max"] == 1500.0
    assert t1["images_per_s"] == 50.0  # one epoch only: that one
    assert t1["gpu_mem_peak_mb"] is None and t1["nvsmi_used_mib_max"] is None  # N/A
    assert other == {"7 (sweep driver)": 500.0}
    s = gs.gpu_summary(samples)
    assert s["samples"] == 4 and s["sample_errors"] == 1 and s["busy_samples"] == 2
    assert s["gpu_util_mean_pct"] == 70.0 and s["gpu_util_max_pct"] == 90.0
    assert s["gpu_mem_used_max_mib"] == 3000.0
    assert gs.gpu_summary([])["gpu_util_mean_pct"] is None
    # each trial's memory against its share of the GPU (0.25 of 80,000 MiB here)
    m = gs.memory_share(trials, samples, 0.25)
    assert m == {"mem_per_trial_max_mib": 1500.0, "mem_share_mib": 20000.0, "mem_fits_share": True}
    assert gs.memory_share(trials, samples, 0.01)["mem_fits_share"] is False
    assert gs.memory_share(trials, [], 0.25)["mem_fits_share"] is None  # no total known


def test_sampler_writes_each_sample_and_no_source_writes_nothing(tmp_path):
    calls = []

    def fake():
        calls.append(1)
        if len(calls) == 2:
            raise subprocess.TimeoutExpired("nvidia-smi", 5)
        return {"gpus": [], "apps": [{"pid": len(calls), "used_mib": 1.0}]}

    with gs.Sampler(tmp_path / "s.jsonl", fake, every=0.05):
        time.sleep(0.4)
    rows = gs.read_samples(tmp_path / "s.jsonl")
    assert len(rows) >= 3 and len(rows) == len(calls)
    assert "error" in rows[1] and rows[2]["apps"][0]["pid"] == 3
    with gs.Sampler(tmp_path / "none.jsonl", None):
        pass
    assert gs.read_samples(tmp_path / "none.jsonl") == []


def test_junit_counts(tmp_path):
    xml = tmp_path / "j.xml"
    xml.write_text(
        '<testsuites><testsuite><testcase classname="a" name="ok"/>'
        '<testcase classname="a" name="s"><skipped message="needs a GPU"/></testcase>'
        '<testcase classname="a" name="f"><failure message="boom"/></testcase>'
        "</testsuite></testsuites>"
    )
    c = gc.junit_counts(xml)
    assert (c["passed"], c["failed"], c["skipped"]) == (1, 1, 1)
    assert c["skips"] == ["a::s: needs a GPU"] and c["failures"] == ["a::f: boom"]


def snapshot(path: Path):
    return path.stat().st_mtime_ns if path.exists() else None


@pytest.mark.slow  # 1.5-3 min on 2 cores: a tiny sweep, a bare run and a Tune trial
def test_gpu_check_without_a_gpu_dry_runs_its_plumbing(tmp_path, tiny_data_root):
    committed = REPO / "results" / "benchmarks" / "gpu_check.parquet"
    before = snapshot(committed)
    work = tmp_path / "work"
    env = {k: v for k, v in os.environ.items() if k not in ("CNNSWEEP_BENCH_DIR", "RAY_ADDRESS")}
    # hidden CUDA: the dry run on any machine, so this never skips and never takes a GPU
    env |= {"CUDA_VISIBLE_DEVICES": "", "CNNSWEEP_DATA_ROOT": str(tiny_data_root)}
    env |= {"GPU_CHECK_WORK": str(work), "PYTHON": str(REPO / ".venv" / "bin" / "python")}
    t0 = time.monotonic()
    out = subprocess.run(
        ["bash", "bench/gpu_check.sh"], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    wall = time.monotonic() - t0
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    assert "NO GPU on this machine: the GPU figures were NOT measured" in out.stdout
    assert "gpu_check: OK (mode cpu" in out.stdout
    # no speed assertion: on a shared 2-core machine the wall time is other jobs' too (90 s
    # alone, ~170 s beside a test run); the script's own step limits bound it
    print(f"dry run: {wall:.0f} s")

    # the tests step found the CUDA-only tests and saw each of them skip
    tests = json.loads((work / "tests.json").read_text())
    assert tests["ok"] and tests["failed"] == 0 and tests["passed"] == 0
    skipped = {s.split(": ")[0].split("[")[0] for s in tests["skips"]}
    assert skipped == {
        "tests.test_gpu_path::test_cuda_amp_trains_with_gpu_metrics",
        "tests.test_gpu_path::test_cuda_host_placement_stages_through_pinned_memory",
        "tests.test_gpu_path::test_cuda_checkpoint_resumes_with_scaler_and_device_rng",
        "tests.test_augment::test_same_seed_same_output_on_cpu_and_gpu",
    }
    assert all(s.endswith(": needs a GPU") for s in tests["skips"])

    # the sweep ran the paper preset's subset to the end: its trials table
    trials = pd.read_parquet(work / "results" / "mnist_optimizers" / "trials.parquet")
    assert len(trials) == 2 and set(trials["status"]) == {"TERMINATED"}
    assert set(trials["optimizer"]) == {"sgd", "adam"} and set(trials["model"]) == {"resnet18"}
    assert set(trials["image_size"]) == {32} and set(trials["epochs_run"]) == {2}
    assert (trials["images_per_s"] > 0).all()

    # the row: in the work folder's bench dir (CNNSWEEP_BENCH_DIR unset), never the committed one
    assert snapshot(committed) == before
    rows = pd.read_parquet(work / "bench" / "gpu_check.parquet")
    assert len(rows) == 1
    row = rows.iloc[0]
    for col in ("benchmark", "date_utc", "git_commit", "cpu", "gpus", "torch", "ray", "command",
                "mode", "measured_on_gpu", "amp", "tests_ok", "sweep_ok", "trials", "samples",
                "gpu_util_mean_pct", "gpu_mem_peak_mb_max", "bare_images_per_s",
                "tune_images_per_s", "tune_over_bare_images_per_s", "target"):  # fmt: skip
        assert col in rows.columns, col
    assert row["mode"] == "cpu" and not row["measured_on_gpu"] and row["gpus"] == "none"
    assert row["amp"] == "none" and row["target"] == ">= 0.7"
    assert row["tests_ok"] and row["sweep_ok"]
    assert row["sweep_trials"] == 2 and row["sweep_terminated"] == 2
    assert row["bare_images_per_s"] > 0 and row["tune_images_per_s"] > 0
    assert row["tune_over_bare_images_per_s"] == pytest.approx(
        row["tune_images_per_s"] / row["bare_images_per_s"]
    )
    assert row["samples"] == 0 and pd.isna(row["gpu_util_mean_pct"])  # no GPU source here
    per_trial = json.loads(row["trials"])
    assert len(per_trial) == 2
    for t in per_trial:
        assert t["status"] == "TERMINATED" and t["images_per_s"] > 0 and t["pids"]
        assert t["gpu_mem_peak_mb"] is None and t["nvsmi_used_mib_max"] is None
    assert "scratch" in row["sweep_weights"]
