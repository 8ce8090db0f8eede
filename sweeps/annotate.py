"""Rebuild a sweep's paper tables from its committed trials table, with this checkout's
paper script: its contract (published-vs-ours pairs, notes), verdicts and forced reasons.

    python -m sweeps.annotate results/mnist_optimizers [results/<sweep> ...]

The trials and epochs tables (the measurements) are not touched; each paper table
(Parquet and Markdown) and ``importance.parquet`` are rewritten atomically, their
provenance the sweep's own plus a ``tables_rebuilt`` record (date, commit, command), and
the report is rendered again. A folder is matched to its paper script by its name (the
sweep's name).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from sweeps import (
    anet_generalization,
    chromosome_baselines,
    cifar_cnns,
    mnist_optimizers,
)
from sweeps.importance import importance_table
from sweeps.provenance import load_provenance, provenance
from sweeps.publish import paper_table_md
from sweeps.report import render
from sweeps.results import write_parquet, write_text

PAPER_SCRIPTS = (mnist_optimizers, anet_generalization, cifar_cnns, chromosome_baselines)
SWEEPS = {m.SWEEP.name: m.SWEEP for m in PAPER_SCRIPTS}


def retable(folder: Path, rebuilt: dict) -> list[Path]:
    """Rewrite the paper tables of ``folder`` from its ``trials.parquet``, recording
    ``rebuilt`` (date, commit, command) in their provenance; returns them."""
    sweep = SWEEPS.get(folder.name)
    if sweep is None:
        known = ", ".join(SWEEPS)
        raise SystemExit(f"{folder}: no paper script named {folder.name!r}; known: {known}")
    trials_path = folder / "trials.parquet"
    if not trials_path.is_file():
        raise SystemExit(f"{folder}: no trials.parquet to rebuild the tables from")
    prov = load_provenance(trials_path) | {"tables_rebuilt": rebuilt}
    done = []
    trials = pd.read_parquet(trials_path)
    for name, df in sweep.make_tables(trials).items():
        write_parquet(df, folder / f"{name}.parquet", prov)
        write_text(paper_table_md(name, df, prov), folder / f"{name}.md")
        done.append(folder / f"{name}.parquet")
    # hyperparameter importance, as a sweep writes it (older results have none)
    write_parquet(importance_table(trials), folder / "importance.parquet", prov)
    done.append(folder / "importance.parquet")
    render(folder)
    return done


def main(argv: list[str] | None = None) -> int:
    folders = [Path(a) for a in (sys.argv[1:] if argv is None else argv)]
    if not folders:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    # once, before anything is written: the commit is the checkout's, not "-dirty" from the
    # first folder's own rewrite
    now = provenance()
    rebuilt = {"date_utc": now["date_utc"], "git_commit": now["git_commit"]}
    rebuilt["command"] = " ".join(["python -m sweeps.annotate", *map(str, folders)])
    for folder in folders:
        for path in retable(folder, rebuilt):
            print(f"rebuilt {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
