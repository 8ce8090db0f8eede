"""Result tables: atomic Parquet + Markdown writing, publishing, and a loader for users.

Every table is written to a temporary file in the target folder and renamed into place,
so a crash mid-write leaves the previous file intact (the next write removes the dead
writer's temp file). A run writes its whole set into ``runs/<run>/`` and :func:`publish`
copies it up under a lock, so two runs of one sweep never mix their tables at the top
level. Each Parquet file carries its provenance (:mod:`sweeps.provenance`) in its schema
metadata under ``cnnsweep.provenance``, and a paper table its published-vs-ours contract
(:mod:`sweeps.compare`) under ``cnnsweep.comparison``.

    >>> from sweeps.results import load_results
    >>> tables = load_results("mnist_optimizers")
    >>> tables["table1"].sort_values("ours_test_acc_pct")
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

PROVENANCE_KEY = b"cnnsweep.provenance"
# df.attrs key of {Parquet metadata key: bytes} that write_parquet stores beside the
# provenance (sweeps.compare puts a table's contract there)
METADATA_ATTR = "cnnsweep.metadata"
PUBLISH_LOCK = ".publish.lock"
PUBLISHED = ".published.json"
RUNS = "runs"
# Temp files are named .{target}.{host}.{pid}.{random}.tmp: the host and PID say whose they
# are, so a later write can tell a killed writer's leftover from a live writer's work. The
# host is part of the name because a PID means nothing on another machine sharing the folder.
_HOST = "".join(c if c.isascii() and c.isalnum() else "-" for c in socket.gethostname()) or "host"


def _temp_owner(name: str) -> tuple[str, int] | None:
    """(host, pid) of a temp file named by :func:`_atomic`, or None for any other file."""
    if not (name.startswith(".") and name.endswith(".tmp")):
        return None
    parts = name[1:].rsplit(".", 4)  # target, host, pid, random, "tmp"; only target has dots
    if len(parts) != 5 or not parts[0] or not parts[2].isdigit():
        return None
    return parts[1], int(parts[2])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete temp files whose writer (on this host) is dead, e.g. SIGKILLed mid-write.

    A live writer's file, another host's file and temp files not named by :func:`_atomic`
    are kept: only a dead PID proves nobody will rename that file into place.
    """
    removed = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return removed
    for entry in entries:
        owner = _temp_owner(entry.name)
        if owner is None or owner[0] != _HOST or _pid_alive(owner[1]):
            continue
        with contextlib.suppress(FileNotFoundError):  # another cleaner was faster
            os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed


def _atomic(path: Path, write) -> None:
    """Write to a temp file beside ``path``, then rename it over ``path``.

    os.replace is atomic within a folder, so a reader or a crash sees the old or the new
    file, never half of one; a killed writer's temp file is removed by the next write.
    The data is fsynced before the rename and the folder after it: without that, a power
    loss can leave the new name pointing at an empty file (the rename reached the disk
    before the data did).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent)
    prefix = f".{path.name}.{_HOST}.{os.getpid()}."
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be shared
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync(path.parent)


def _fsync(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_parquet(df: pd.DataFrame, path: Path, prov: dict) -> None:
    """Write with pyarrow (fastparquet writes list columns pyarrow cannot read), atomically;
    ``prov`` and the entries of ``df.attrs[METADATA_ATTR]`` go into the schema metadata."""
    extra = df.attrs.get(METADATA_ATTR, {})
    if extra:  # stored as their own keys, not again inside pandas' attrs record
        df = df.copy(deep=False)
        df.attrs = {k: v for k, v in df.attrs.items() if k != METADATA_ATTR}
    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[PROVENANCE_KEY] = json.dumps(prov, default=str).encode()
    meta.update(extra)
    table = table.replace_schema_metadata(meta)
    _atomic(Path(path), lambda tmp: pq.write_table(table, tmp))


def write_text(text: str, path: Path) -> None:
    _atomic(Path(path), lambda tmp: Path(tmp).write_text(text))


def copy_file(src: Path, path: Path) -> None:
    """Copy a file (a figure) into the results, atomically like every table."""
    data = Path(src).read_bytes()
    _atomic(Path(path), lambda tmp: Path(tmp).write_bytes(data))


def run_folder(sweep_dir: Path, run_name: str) -> Path:
    """Where a run writes its complete result set before :func:`publish` copies it up.

    One folder per run name, so concurrent runs of a sweep never write the same file; a
    resumed run (same name) overwrites its own folder.
    """
    if not run_name or run_name in {".", ".."} or "/" in run_name or os.sep in run_name:
        raise ValueError(f"run name {run_name!r} is not a plain folder name")
    return Path(sweep_dir) / RUNS / run_name


_held = threading.local()  # sweep folders whose exclusive lock this thread holds


@contextlib.contextmanager
def _publish_lock(sweep_dir: Path, exclusive: bool) -> Iterator[None]:
    """flock on ``sweep_dir/.publish.lock``: exclusive for publishers, shared for readers.

    The lock file is never deleted (a deleted-and-recreated lock file would let two
    holders in). A reader that cannot open or create it (read-only checkout) reads unlocked.
    Inside :func:`publish_lock` the same thread reads and publishes without locking again
    (a second flock on a new descriptor would wait for the first: a self-deadlock).
    """
    key = str(Path(sweep_dir).resolve())
    held = getattr(_held, "dirs", set())
    if key in held:
        yield
        return
    lock = Path(sweep_dir) / PUBLISH_LOCK
    try:
        fd = os.open(lock, (os.O_RDWR if exclusive else os.O_RDONLY) | os.O_CREAT, 0o644)
    except OSError:
        if exclusive:
            raise
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        if exclusive:
            _held.dirs = held | {key}
        yield
    finally:
        if exclusive:
            _held.dirs = held
        os.close(fd)  # releases the lock


def publish_lock(sweep_dir: Path) -> contextlib.AbstractContextManager[None]:
    """Hold the sweep folder's publish lock across several steps (read the published
    tables, then write something derived from them, such as the report), so no other
    run publishes in between and the derived files always match the tables beside them."""
    Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    return _publish_lock(sweep_dir, exclusive=True)


def _read_record(sweep_dir: Path) -> dict | None:
    try:
        record = json.loads((Path(sweep_dir) / PUBLISHED).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def _plain_names(names) -> set[str]:
    """File names safe to delete from a sweep folder: no paths, no hidden files."""
    return {n for n in names if isinstance(n, str) and n and Path(n).name == n and n[0] != "."}


def _previous_set(sweep_dir: Path) -> set[str]:
    """Files the last publish owns; after an interrupted publish, the union of both sets.

    Without a record (results written before publishing existed) every top-level file
    counts, so the first publish also leaves exactly one run's set.
    """
    record = _read_record(sweep_dir)
    if record is None:
        return _plain_names(p.name for p in Path(sweep_dir).iterdir() if p.is_file())
    names = _plain_names(record.get("files", []))
    if record.get("in_progress"):
        names |= _plain_names(record.get("previous", []))
    return names


def _write_record(sweep_dir: Path, record: dict) -> None:
    write_text(json.dumps(record, indent=1) + "\n", Path(sweep_dir) / PUBLISHED)


def publish(run_dir: Path, sweep_dir: Path) -> list[Path]:
    """Make ``run_dir``'s files (not sub-folders) the sweep's top-level set, all or nothing.

    Under an exclusive lock, so two runs finishing together cannot interleave their files:
    each file is copied atomically, files of the previous set that the new one lacks are
    removed, and ``.published.json`` names the run last. An in-progress record is written
    first, so a publish killed midway is visible to readers and repaired by the next one.
    """
    run_dir, sweep_dir = Path(run_dir), Path(sweep_dir)
    names = sorted(_plain_names(p.name for p in run_dir.iterdir() if p.is_file()))
    if not names:
        raise FileNotFoundError(f"nothing to publish in {run_dir}")
    sweep_dir.mkdir(parents=True, exist_ok=True)
    record = {"run_name": run_dir.name, "files": names}
    with _publish_lock(sweep_dir, exclusive=True):
        previous = _previous_set(sweep_dir)
        _write_record(sweep_dir, {**record, "in_progress": True, "previous": sorted(previous)})
        for name in names:
            _atomic(sweep_dir / name, lambda tmp, src=run_dir / name: shutil.copyfile(src, tmp))
        for name in sorted(previous - set(names)):
            target = sweep_dir / name
            if not target.is_dir():
                target.unlink(missing_ok=True)
        _write_record(sweep_dir, record)
    return [sweep_dir / name for name in names]


def format_cell(col: str, v, floatfmt: str = ".2f") -> str:
    """One table cell as text, the same in every Markdown and HTML table: missing as '—',
    learning rates with ``g`` (0.001, not 0.00), accuracies given as fractions
    (``*_acc``, as the ANet-c6 paper gives them) with three decimals."""
    if v is None or v is pd.NA or (isinstance(v, float | np.floating) and v != v):
        return "—"
    if isinstance(v, float | np.floating):
        v = float(v)
        if col == "lr" or col.endswith("_lr"):
            return format(v, "g")
        return format(v, ".3f" if col.endswith("_acc") else floatfmt)
    return str(v)


def to_markdown(df: pd.DataFrame, floatfmt: str = ".2f") -> str:
    """A GitHub Markdown table (no tabulate dependency), cells as :func:`format_cell`."""
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        cells = (format_cell(c, v, floatfmt) for c, v in zip(cols, row, strict=False))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def load_results(
    sweep: str,
    results_dir: str | Path = "results",
    engine: str = "pyarrow",
    run: str | None = None,
) -> dict[str, pd.DataFrame]:
    """All Parquet tables of a sweep, keyed by file stem (``trials``, ``epochs``, ...).

    By default the published set, read under a shared lock so a concurrent publish never
    mixes two runs' tables; ``run`` reads that run's own folder (``runs/<run>/``) instead.
    """
    folder = Path(results_dir) / sweep
    if run is not None:
        return _read_tables(run_folder(folder, run), engine)
    if not folder.is_dir():
        raise FileNotFoundError(f"no Parquet tables in {folder}")
    with _publish_lock(folder, exclusive=False):
        record = _read_record(folder)
        if record is not None and record.get("in_progress"):
            raise RuntimeError(
                f"{folder} holds a half-published set (publishing run {record.get('run_name')!r}"
                " was interrupted); publish a run again, or pass run= to read one run's folder"
            )
        return _read_tables(folder, engine)


ENGINES = ("pyarrow", "fastparquet")


def read_table(path: str | Path, engine: str = "pyarrow") -> pd.DataFrame:
    """One result table as a DataFrame, read by pyarrow or by fastparquet.

    fastparquet through its own API: pandas 3.1 deprecates ``read_parquet``'s fastparquet
    engine (gone in pandas 4), and the tables promise to be readable by both readers.
    """
    if engine == "pyarrow":
        return pd.read_parquet(path, engine="pyarrow")
    if engine == "fastparquet":
        import fastparquet

        with open(path, "rb") as f:  # given a path, fastparquet leaves its file open
            return fastparquet.ParquetFile(f).to_pandas()
    raise ValueError(f"engine {engine!r} is unknown; allowed: {', '.join(ENGINES)}")


def _read_tables(folder: Path, engine: str) -> dict[str, pd.DataFrame]:
    files = sorted(folder.glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no Parquet tables in {folder}")
    return {f.stem: read_table(f, engine) for f in files}
