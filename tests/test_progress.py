"""Per-batch progress bars open only for epochs long enough to watch."""

from __future__ import annotations

import re
import sys

import pytest

from trainables.config import TrialConfig
from trainables.data import load_splits
from trainables.engine import Run
from trainables.progress import (
    AFTER_ENV,
    EVERY_ENV,
    LOG_LINE_RE,
    EpochBar,
    after_seconds,
    driver_style,
)


class Recorder(EpochBar):
    """EpochBar whose bar is a list of updates (the real tqdm is tested below)."""

    def _open(self):
        rec = self

        class Bar:
            updates: list[int] = []

            def update(self, n):
                self.updates.append(n)

            def close(self):
                rec.closed = True

        return Bar()


def test_bar_opens_after_the_threshold_with_what_was_already_done():
    bar = Recorder("e", total=100, after_s=0.0)
    bar.update(10)
    bar.update(5)
    bar.close()
    assert bar.opened and bar.bar.updates == [10, 5] and bar.closed


def test_short_epochs_print_nothing(capsys):
    bar = EpochBar("e", total=100, after_s=3600)
    for _ in range(10):
        bar.update(10)
    bar.close()
    assert not bar.opened and capsys.readouterr().err == ""


def test_a_real_bar_reaches_the_total(capsys):
    bar = EpochBar("epoch 1", total=40, after_s=0.0)
    for _ in range(4):
        bar.update(10)
    bar.close()
    err = capsys.readouterr().err
    assert "epoch 1" in err and "40/40" in err


@pytest.mark.parametrize(
    ("raw", "want"), [("", 30.0), ("0", 0.0), ("12.5", 12.5), ("off", None), ("x", 30.0)]
)
def test_threshold_from_the_environment(monkeypatch, raw, want):
    monkeypatch.setenv(AFTER_ENV, raw)
    assert after_seconds() == want


def test_engine_reports_every_training_image():
    data = load_splits("synthetic", image_size=16, train_limit=70, val_limit=20, test_limit=20)
    run = Run(
        TrialConfig.from_dict(
            {
                "model": "simple_cnn",
                "image_size": 16,
                "batch_size": 32,
                "epochs": 1,
                "optimizer": "sgd",
                "lr": 0.01,
            }
        ),
        data,
    )
    bar = Recorder("e", total=len(data.train), after_s=0.0)
    run.train_epoch(progress=bar)
    # 70 images in batches of 32: 32 + 32 + 6
    assert bar.done == 70 and bar.bar.updates == [32, 32, 6] and bar.closed


def test_the_progress_table_is_printed_whatever_an_earlier_sweep_left_behind():
    """Tune's reporter decides at construction whether to print its table, from a global
    verbosity that an earlier sweep in the same process has lowered (seen in CI: no table)."""
    from types import SimpleNamespace

    from ray.tune.utils.log import Verbosity, set_verbosity

    from sweeps.tuner import progress_reporter

    set_verbosity(Verbosity.V1_EXPERIMENT)  # what any earlier tune.run(verbose=1) leaves

    def plan(cells=None, search="grid", seeds=(0,)):
        return SimpleNamespace(cells=cells, tune=SimpleNamespace(search=search, seeds=seeds))

    reporter = progress_reporter(plan())
    assert reporter._print_intermediate_tables
    assert list(reporter._metric_columns) == [
        "epoch",
        "train_loss",
        "val_loss",
        "val_acc",
        "images_per_s",
    ]
    assert list(reporter._parameter_columns) == ["model", "optimizer", "lr"]
    cells = progress_reporter(plan(cells={"a": {}}, search="optuna"))
    assert list(cells._parameter_columns) == ["label", "lr"]
    # the same cell once per seed: the seed tells its rows apart
    seeded = progress_reporter(plan(seeds=(0, 1, 2)))
    assert list(seeded._parameter_columns) == ["model", "optimizer", "lr", "seed"]


def test_lines_for_a_log_plain_and_with_what_is_left(capsys, monkeypatch):
    """style="lines": what `ray job logs` or a log file keeps, one plain line at a time."""
    monkeypatch.setenv(EVERY_ENV, "3600")  # only the opening and the closing line
    bar = EpochBar("t1 epoch 2/5", total=40, after_s=0.0, style="lines")
    for _ in range(4):
        bar.update(10)
    bar.close()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2, lines
    assert re.fullmatch(
        r"t1 epoch 2/5: 10/40 images \(25 %\), [\d.]+ img/s, about \d+ s left", lines[0]
    )
    assert re.fullmatch(
        r"t1 epoch 2/5: 40/40 images \(100 %\), [\d.]+ img/s, epoch done in \d+ s", lines[1]
    )
    assert not any("\x1b" in x or "\r" in x for x in lines)
    assert all(re.search(LOG_LINE_RE, x) for x in lines)  # Ray never de-duplicates them


def test_lines_every_interval(capsys, monkeypatch):
    monkeypatch.setenv(EVERY_ENV, "0")
    bar = EpochBar("e", total=30, after_s=0.0, style="lines")
    for _ in range(3):
        bar.update(10)
    bar.close()
    out = capsys.readouterr().out
    assert [m for m in re.findall(r"(\d+)/30 images", out)] == ["10", "20", "30", "30"]


def test_the_driver_asks_for_lines_unless_it_writes_to_a_terminal(monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    assert driver_style() == "lines"
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert driver_style() == "bar"


def test_unknown_style_is_refused():
    with pytest.raises(ValueError, match=r"progress style 'fancy'; allowed: bar, lines"):
        EpochBar("e", total=1, style="fancy")
