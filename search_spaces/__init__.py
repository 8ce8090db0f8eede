"""Search spaces and the published tables they reproduce: plain data, no torch.

The published numbers live in ``search_spaces/published/*.csv`` (copied from the papers'
transcriptions) so a clone of this repository carries them.
"""

from __future__ import annotations

import csv
from pathlib import Path

PUBLISHED_DIR = Path(__file__).parent / "published"


def grid(models, optimizers, lrs) -> dict:
    """Every model x optimizer x lr cell, as Tune grid-search axes."""
    from ray import tune

    return {
        "model": tune.grid_search(list(models)),
        "optimizer": tune.grid_search(list(optimizers)),
        "lr": tune.grid_search(list(lrs)),
    }


def optuna_space(models, optimizers, lr_range) -> dict:
    """TPE space: categorical model and optimizer, log-uniform lr over ``lr_range``."""
    from ray import tune

    return {
        "model": tune.choice(list(models)),
        "optimizer": tune.choice(list(optimizers)),
        "lr": tune.loguniform(*lr_range),
    }


def read_published(filename: str) -> list[dict[str, str]]:
    """Rows of a published-table CSV; ``#`` lines are the transcriber's notes."""
    with open(PUBLISHED_DIR / filename, newline="") as f:
        lines = [line for line in f if not line.startswith("#")]
    return list(csv.DictReader(lines))


def published_notes(filename: str) -> list[str]:
    """The ``#`` note lines of a published-table CSV (source, setup, caveats)."""
    with open(PUBLISHED_DIR / filename) as f:
        return [line[1:].strip() for line in f if line.startswith("#")]
