"""Which case or cell each file of an image folder comes from (``--group-pattern``,
``--groups-csv``), so that a grouped split keeps one case's images in one split."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from trainables.data.registry import DataError, FileGroups

GROUPS_CSV_SHAPE = (
    "allowed: a CSV with a header row holding columns file and group (file: "
    "<class folder>/<name> or the bare name)"
)


def read_groups_csv(path: Path) -> dict[str, str]:
    """``--groups-csv``: {file: group}, ``file`` as written (``\\`` read as ``/``)."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header, rows = reader.fieldnames or [], list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"--groups-csv {path} cannot be read ({exc}); {GROUPS_CSV_SHAPE}") from None
    missing = [c for c in ("file", "group") if c not in header]
    if missing:
        raise DataError(
            f"--groups-csv {path}: no column(s) {', '.join(missing)} (header: "
            f"{', '.join(header) or 'none'}); {GROUPS_CSV_SHAPE}"
        )
    table: dict[str, str] = {}
    for line, row in enumerate(rows, start=2):
        file = (row["file"] or "").strip().replace("\\", "/").removeprefix("./")
        group = (row["group"] or "").strip()
        if not file or not group:
            raise DataError(
                f"--groups-csv {path} line {line}: empty file or group; {GROUPS_CSV_SHAPE}"
            )
        if table.setdefault(file, group) != group:
            raise DataError(
                f"--groups-csv {path} line {line}: {file} is given groups {table[file]!r} and "
                f"{group!r}; allowed: one group per file"
            )
    return table


def group_ids(root: Path, files: list[Path], by: FileGroups) -> np.ndarray:
    """The case/cell id of every file of the folder, by file-name pattern or CSV."""
    if by.pattern is not None:
        return _ids_by_pattern(files, by.pattern)
    return _ids_by_csv(root, files, by.csv)


def _ids_by_pattern(files: list[Path], pattern: str) -> np.ndarray:
    import re

    rx = re.compile(pattern)
    ids = []
    for path in files:
        m = rx.search(path.name)
        if m is None or not m.group("group"):
            raise DataError(
                f"{path}: --group-pattern {pattern!r} does not match its name "
                f"{path.name!r}; allowed: a pattern whose (?P<group>...) matches every "
                "file name"
            )
        ids.append(m.group("group"))
    return np.asarray(ids)


def _ids_by_csv(root: Path, files: list[Path], csv: Path) -> np.ndarray:
    table = read_groups_csv(csv)
    names = Counter(p.name for p in files)
    ids, absent = [], []
    for path in files:
        rel = path.relative_to(root).as_posix()
        group = table.get(rel)
        if group is None and (group := table.get(path.name)) is not None and names[path.name] > 1:
            raise DataError(
                f"--groups-csv {csv}: {path.name} names {names[path.name]} files of "
                f"{root}; allowed: <class folder>/<name> for a name in two class folders"
            )
        if group is None:
            absent.append(path)
        ids.append(group)
    if absent:
        more = f" and {len(absent) - 1} other file(s)" if len(absent) > 1 else ""
        raise DataError(
            f"{absent[0]}{more} not in --groups-csv {csv}; allowed: a row per image, file "
            f"{absent[0].relative_to(root).as_posix()} or {absent[0].name}"
        )
    return np.asarray(ids)
