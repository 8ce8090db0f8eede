"""Per-batch progress for epochs long enough to watch.

A 224 px VGG-16 epoch on a CPU takes hours; Tune's table only moves once per epoch, so a
person cannot tell a slow trial from a hung one. :class:`EpochBar` opens a progress bar
only after an epoch has run ``CNNSWEEP_PROGRESS_AFTER_S`` seconds (default 30; ``off``
never), so the many short epochs of a small sweep print nothing extra. Inside a Ray
worker it is Ray's ``tqdm_ray`` bar, which the driver draws (one line per trial, also in
``ray job logs``); elsewhere a plain tqdm bar on stderr.
"""

from __future__ import annotations

import os
import time

AFTER_ENV = "CNNSWEEP_PROGRESS_AFTER_S"
DEFAULT_AFTER_S = 30.0


def after_seconds() -> float | None:
    """Seconds before a bar opens, or None when bars are off."""
    raw = os.environ.get(AFTER_ENV, "").strip().lower()
    if raw in ("off", "none", "no", "false"):
        return None
    try:
        return float(raw) if raw else DEFAULT_AFTER_S
    except ValueError:
        return DEFAULT_AFTER_S


def _in_ray_worker() -> bool:
    try:
        import ray

        return ray.is_initialized() and ray.get_runtime_context().worker.mode == ray.WORKER_MODE
    except Exception:  # no Ray, or an older runtime context: a plain bar
        return False


class EpochBar:
    """``update(n)`` once per batch with the images seen; ``close()`` at the epoch's end."""

    def __init__(self, desc: str, total: int, after_s: float | None = None):
        self.desc, self.total = desc, total
        self.after_s = after_seconds() if after_s is None else after_s
        self.t0 = time.perf_counter()
        self.done = 0
        self.bar = None

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is None:
            if self.after_s is None or time.perf_counter() - self.t0 < self.after_s:
                return
            self.bar = self._open()
            self.bar.update(self.done)
            return
        self.bar.update(n)

    def _open(self):
        if _in_ray_worker():
            from ray.experimental import tqdm_ray

            return tqdm_ray.tqdm(desc=self.desc, total=self.total, unit="img")
        from tqdm import tqdm

        return tqdm(desc=self.desc, total=self.total, unit="img", mininterval=1.0)

    @property
    def opened(self) -> bool:
        return self.bar is not None

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
