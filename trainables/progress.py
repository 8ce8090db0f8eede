"""Per-batch progress for epochs long enough to watch.

A 224 px VGG-16 epoch on a CPU takes hours; Tune's table only moves once per epoch, so a
person cannot tell a slow trial from a hung one. :class:`EpochBar` opens a progress bar
only after an epoch has run ``CNNSWEEP_PROGRESS_AFTER_S`` seconds (default 30; ``off``
never), so the many short epochs of a small sweep print nothing extra. Inside a Ray
worker it is Ray's ``tqdm_ray`` bar, which the driver draws (one line per trial, also in
``ray job logs``); elsewhere a plain tqdm bar on stderr.

A bar redraws in place only on a terminal. When the driver's output goes to a file or to
``ray job submit``'s log, every redraw would stay there with its cursor escape codes, so
the driver asks for ``style="lines"`` instead (:func:`driver_style`): a plain line every
``CNNSWEEP_PROGRESS_EVERY_S`` seconds (default 30) and one when the epoch ends.
"""

from __future__ import annotations

import os
import sys
import time

AFTER_ENV = "CNNSWEEP_PROGRESS_AFTER_S"
DEFAULT_AFTER_S = 30.0
EVERY_ENV = "CNNSWEEP_PROGRESS_EVERY_S"
LOG_LINE_RE = r"\d+/\d+ images \(\d+ %\)"  # matches every line that Lines prints
STYLES = ("bar", "lines")


def driver_style() -> str:
    """``bar`` when the driver writes to a terminal, ``lines`` for a log or a pipe."""
    return "bar" if sys.stdout.isatty() else "lines"


def every_seconds() -> float:
    """Seconds between two progress lines (``style="lines"``)."""
    try:
        return max(0.0, float(os.environ.get(EVERY_ENV, "") or DEFAULT_AFTER_S))
    except ValueError:
        return DEFAULT_AFTER_S


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

    def __init__(self, desc: str, total: int, after_s: float | None = None, style: str = "bar"):
        if style not in STYLES:
            raise ValueError(f"progress style {style!r}; allowed: {', '.join(STYLES)}")
        self.desc, self.total, self.style = desc, total, style
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
        if self.style == "lines":
            return Lines(self.desc, self.total, self.t0, every_seconds())
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


class Lines:
    """Progress for logs: one plain line now and then, and one when the epoch ends."""

    def __init__(self, desc: str, total: int, t0: float, every_s: float):
        self.desc, self.total, self.t0, self.every_s = desc, total, t0, every_s
        self.done = 0
        self.last = -float("inf")

    def update(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.last >= self.every_s:
            self.last = now
            self._print(now)

    def close(self) -> None:
        self._print(time.perf_counter(), end=True)

    def _print(self, now: float, end: bool = False) -> None:
        elapsed = max(now - self.t0, 1e-9)
        rate = self.done / elapsed
        if end:
            tail = f"epoch done in {elapsed:.0f} s"
        elif rate > 0:
            tail = f"about {(self.total - self.done) / rate:.0f} s left"
        else:
            tail = "starting"
        pct = 100 * self.done / self.total if self.total else 100.0
        print(
            f"{self.desc}: {self.done}/{self.total} images ({pct:.0f} %), {rate:.1f} img/s, {tail}",
            flush=True,
        )
