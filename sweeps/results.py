"""Result tables: atomic Parquet + Markdown writing, provenance, and a loader for users.

Every table is written to a temporary file in the target folder and renamed into place,
so a crash mid-write leaves the previous file intact. Provenance (command, budget,
hardware, date, git commit, package versions, data digest) goes into each Parquet file's
schema metadata under ``cnnsweep.provenance`` and into ``provenance.json`` beside it.

    >>> from sweeps.results import load_results
    >>> tables = load_results("mnist_optimizers")
    >>> tables["table1"].sort_values("ours_test_acc_pct")
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

PROVENANCE_KEY = b"cnnsweep.provenance"
GIT_COMMIT_ENV = "CNNSWEEP_GIT_COMMIT"
PACKAGES = ("torch", "torchvision", "ray", "mlflow", "optuna", "pyarrow", "pandas", "timm", "numpy")


def git_commit() -> str:
    """HEAD of the source tree, or $CNNSWEEP_GIT_COMMIT (a Ray job's working dir has no .git)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10
        )
        if out.returncode == 0:
            commit = out.stdout.strip()
            dirty = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=here,
                capture_output=True,
                text=True,
                timeout=10,
            )
            return commit + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return os.environ.get(GIT_COMMIT_ENV, "unknown")


def hardware() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "gpus": gpus,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def provenance(**extra) -> dict:
    """What a reader needs to trust and rerun a result table."""
    return {
        "command": " ".join(sys.argv),
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git_commit": git_commit(),
        "hardware": hardware(),
        "versions": versions(),
        **extra,
    }


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_parquet(df: pd.DataFrame, path: Path, prov: dict) -> None:
    """Write with pyarrow (fastparquet writes list columns pyarrow cannot read), atomically."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[PROVENANCE_KEY] = json.dumps(prov, default=str).encode()
    table = table.replace_schema_metadata(meta)
    _atomic(Path(path), lambda tmp: pq.write_table(table, tmp))


def write_text(text: str, path: Path) -> None:
    _atomic(Path(path), lambda tmp: Path(tmp).write_text(text))


def copy_file(src: Path, path: Path) -> None:
    """Copy a file (a figure) into the results, atomically like every table."""
    data = Path(src).read_bytes()
    _atomic(Path(path), lambda tmp: Path(tmp).write_bytes(data))


def to_markdown(df: pd.DataFrame, floatfmt: str = ".2f") -> str:
    """A GitHub Markdown table (no tabulate dependency); missing values shown as '—'.

    Learning rates are printed with ``g`` (0.001, not 0.00), accuracies given as
    fractions (``*_acc``) with three decimals; whole floats as integers.
    """

    def cell(col: str, v) -> str:
        if v is None or (isinstance(v, float) and v != v) or v is pd.NA:
            return "—"
        if isinstance(v, float):
            if col == "lr" or col.endswith("_lr"):
                return format(v, "g")
            if col.endswith("_acc"):  # fractions, as the ANet-c6 paper gives them
                return format(v, ".3f")
            return format(v, floatfmt)
        return str(v)

    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(cell(c, v) for c, v in zip(cols, row, strict=False)) + " |")
    return "\n".join(lines) + "\n"


def load_results(
    sweep: str, results_dir: str | Path = "results", engine: str = "pyarrow"
) -> dict[str, pd.DataFrame]:
    """All Parquet tables of a sweep, keyed by file stem (``trials``, ``epochs``, ...)."""
    folder = Path(results_dir) / sweep
    files = sorted(folder.glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no Parquet tables in {folder}")
    return {f.stem: pd.read_parquet(f, engine=engine) for f in files}


def load_provenance(path: str | Path) -> dict:
    """The provenance stored in a result table's Parquet metadata."""
    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta[PROVENANCE_KEY]) if PROVENANCE_KEY in meta else {}
