"""One-off: store each paper table's published-vs-ours contract in tables written before
tables carried it (the contract each paper script declares in its ``COMPARISONS``).

    python -m sweeps.annotate results/mnist_optimizers [results/<sweep> ...]

Only the Parquet metadata is rewritten (atomically): columns, values and provenance stay.
A folder is matched to its paper script by its name (the sweep's name).
"""

from __future__ import annotations

import sys
from pathlib import Path

from sweeps import (
    anet_generalization,
    chromosome_baselines,
    cifar_cnns,
    compare,
    mnist_optimizers,
)

PAPER_SCRIPTS = (mnist_optimizers, anet_generalization, cifar_cnns, chromosome_baselines)
CONTRACTS = {m.SWEEP.name: m.COMPARISONS for m in PAPER_SCRIPTS}


def annotate_folder(folder: Path) -> list[Path]:
    """Annotate every paper table in ``folder`` (and in its runs' folders); returns them."""
    contracts = CONTRACTS.get(folder.name)
    if contracts is None:
        raise SystemExit(
            f"{folder}: no paper script named {folder.name!r}; known: {', '.join(CONTRACTS)}"
        )
    done = []
    for name, comparison in contracts.items():
        for path in sorted([folder / f"{name}.parquet", *folder.glob(f"runs/*/{name}.parquet")]):
            if path.is_file():
                compare.annotate(path, comparison)
                done.append(path)
    return done


def main(argv: list[str] | None = None) -> int:
    folders = [Path(a) for a in (sys.argv[1:] if argv is None else argv)]
    if not folders:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    for folder in folders:
        for path in annotate_folder(folder):
            print(f"annotated {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
