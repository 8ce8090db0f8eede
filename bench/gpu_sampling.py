"""GPU sampling for bench/gpu_check.py: ``nvidia-smi`` every second in a thread, and the
samples attributed to trials (by the pid Tune reports with each result).

Apart from gpu_check.py so its parsing and attribution are tested on canned output: only a
GPU machine produces the real thing.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import threading
import time
from pathlib import Path

GPU_QUERY = "--query-gpu=index,utilization.gpu,memory.used,memory.total"
APPS_QUERY = "--query-compute-apps=pid,used_memory"
CSV = "--format=csv,noheader,nounits"


def _num(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:  # "[N/A]", "[Not Supported]" (MIG, some drivers)
        return None


def parse_gpu_csv(text: str) -> list[dict]:
    """``nvidia-smi --query-gpu=index,utilization.gpu,memory.used,memory.total`` rows."""
    rows = []
    for line in text.strip().splitlines():
        f = [x.strip() for x in line.split(",")]
        if len(f) == 4 and f[0].isdigit():
            rows.append(
                {
                    "index": int(f[0]),
                    "util_pct": _num(f[1]),
                    "used_mib": _num(f[2]),
                    "total_mib": _num(f[3]),
                }
            )
    return rows


def parse_apps_csv(text: str) -> list[dict]:
    """``nvidia-smi --query-compute-apps=pid,used_memory`` rows (none: no process)."""
    rows = []
    for line in text.strip().splitlines():
        f = [x.strip() for x in line.split(",")]
        if len(f) == 2 and f[0].isdigit():
            rows.append({"pid": int(f[0]), "used_mib": _num(f[1])})
    return rows


def nvidia_smi_sample() -> dict:
    """One sample: the GPUs' utilisation and memory, and each compute process's memory."""

    def query(q: str) -> str:
        return subprocess.run(
            ["nvidia-smi", q, CSV], capture_output=True, text=True, timeout=5, check=True
        ).stdout

    return {"gpus": parse_gpu_csv(query(GPU_QUERY)), "apps": parse_apps_csv(query(APPS_QUERY))}


class Sampler:
    """Calls ``source()`` every ``every`` s in a thread and appends each sample, as one
    JSON line, to ``path`` (flushed: a step killed at its time limit keeps them). No
    source (no nvidia-smi): nothing is sampled, and the record says so."""

    def __init__(self, path: Path, source, every: float = 1.0):
        self.path, self.source, self.every = path, source, every
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Sampler:
        self.path.touch()
        if self.source is not None:
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(10)

    def _loop(self) -> None:
        with self.path.open("a") as out:
            while not self.stop.is_set():
                t = time.time()
                try:
                    sample = {"t": t, **self.source()}
                except (OSError, subprocess.SubprocessError, ValueError) as exc:
                    sample = {"t": t, "error": str(exc)[:200]}
                out.write(json.dumps(sample) + "\n")
                out.flush()
                self.stop.wait(max(0.0, self.every - (time.time() - t)))


def read_samples(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def steady(results: list[dict], key: str = "images_per_s") -> float:
    """Median of ``key`` over the epochs after the first (the first pays cuDNN's
    autotuning and CUDA's lazy start); the first epoch's when it is the only one."""
    vals = [r[key] for r in results if r.get(key) is not None and r.get("epoch", 1) >= 2]
    vals = vals or [r[key] for r in results if r.get(key) is not None]
    return statistics.median(vals) if vals else float("nan")


def per_trial(results: dict[str, list[dict]], samples: list[dict], driver_pid: int | None):
    """Per trial: its images/s, the engine's peak allocated GPU memory, and the most GPU
    memory nvidia-smi saw its process use (matched by pid, which Tune reports with every
    result); plus the processes nvidia-smi showed that no trial accounts for."""
    pid_trial = {r["pid"]: tid for tid, rs in results.items() for r in rs if "pid" in r}
    seen: dict[int, float | None] = {}  # pid -> most MiB seen (None: shown, memory N/A)
    for s in samples:
        for app in s.get("apps", []):
            old, new = seen.get(app["pid"]), app["used_mib"]
            seen[app["pid"]] = new if old is None else max(old, new or 0.0)
    trials = []
    for tid, rs in sorted(results.items()):
        cfg = rs[-1].get("config", {})
        pids = sorted({r["pid"] for r in rs if "pid" in r})
        mem = [seen[p] for p in pids if seen.get(p) is not None]
        peaks = [r["gpu_mem_peak_mb"] for r in rs if r.get("gpu_mem_peak_mb") is not None]
        trials.append(
            {
                "trial_id": tid,
                "model": cfg.get("model"),
                "optimizer": cfg.get("optimizer"),
                "epochs": max(r.get("epoch", 0) for r in rs),
                "images_per_s": steady(rs),
                "images_per_s_epoch1": rs[0].get("images_per_s"),
                "gpu_mem_peak_mb": max(peaks) if peaks else None,
                "nvsmi_used_mib_max": max(mem) if mem else None,
                "pids": pids,
            }
        )
    other = {str(p): m for p, m in seen.items() if p not in pid_trial}
    if driver_pid is not None and str(driver_pid) in other:
        other[f"{driver_pid} (sweep driver)"] = other.pop(str(driver_pid))
    return trials, other


def memory_share(trials: list[dict], samples: list[dict], gpus_per_trial: float | None) -> dict:
    """The most GPU memory one trial's process held (nvidia-smi, which includes the CUDA
    context and torch's cache; the engine's peak where nvidia-smi cannot tell processes
    apart) against its share of the GPU. Ray does not enforce memory for fractional GPUs:
    a trial above its share makes ``--gpus-per-trial`` unsafe on a smaller GPU."""
    used = [t["nvsmi_used_mib_max"] or t["gpu_mem_peak_mb"] for t in trials]
    used = [u for u in used if u is not None]
    total = [g["total_mib"] for s in samples for g in s.get("gpus", []) if g["total_mib"]]
    share = gpus_per_trial * max(total) if total and gpus_per_trial else None
    return {
        "mem_per_trial_max_mib": max(used) if used else None,
        "mem_share_mib": share,
        "mem_fits_share": None if share is None or not used else max(used) <= share,
    }


def gpu_summary(samples: list[dict]) -> dict:
    """GPU-wide utilisation and memory over the samples in which a process used the GPU."""
    busy = [s for s in samples if s.get("apps")] or [s for s in samples if s.get("gpus")]
    util = [g["util_pct"] for s in busy for g in s["gpus"] if g["util_pct"] is not None]
    used = [g["used_mib"] for s in busy for g in s["gpus"] if g["used_mib"] is not None]
    return {
        "samples": len(samples),
        "sample_errors": sum("error" in s for s in samples),
        "busy_samples": len(busy),
        "gpu_util_mean_pct": statistics.fmean(util) if util else None,
        "gpu_util_max_pct": max(util) if util else None,
        "gpu_mem_used_max_mib": max(used) if used else None,
    }
