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


# Where the papers contradict themselves, and what their text reports that no table holds:
# one row per finding (table = the published CSV it concerns, lines in the paper's text).
PAPER_NOTES_CSV = "paper_notes.csv"
NOTE_KINDS = {
    "inconsistency": "Paper inconsistency",
    "not_transcribed": "In the paper's text, not its table",
    "reading": "How the paper's number reads",
}


def published_notes(*filenames: str) -> list[str]:
    """The ``#`` note lines of published-table CSVs (source, setup, caveats), then the
    paper notes (:data:`PAPER_NOTES_CSV`) of those tables, each with its lines."""
    notes = []
    for name in filenames:
        with open(PUBLISHED_DIR / name) as f:
            notes += [line[1:].strip() for line in f if line.startswith("#")]
    for r in read_published(PAPER_NOTES_CSV):
        if r["table"] in filenames:
            notes.append(f"{NOTE_KINDS[r['kind']]} ({r['paper']}, line {r['lines']}): {r['note']}")
    return notes
