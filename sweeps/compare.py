"""Ours beside published: one contract for every paper table.

A paper script declares, per table, a :class:`Comparison`: the columns that name a row,
and per compared metric a :class:`Pair` (published column, ours column, the delta column
to fill, unit, direction, label). ``Comparison.apply(df)`` fills the delta columns and
attaches the contract, which :func:`sweeps.results.write_parquet` stores in the Parquet
schema metadata under ``cnnsweep.comparison`` (JSON, see :meth:`Comparison.to_dict`).
The report reads it back (:func:`read`) instead of guessing pairs from column names.

    TABLE = Comparison(
        ids=("model", "optimizer", "lr"),
        pairs=(Pair("published_test_acc_pct", "ours_test_acc_pct", "test accuracy (%)",
                    delta="delta_pp"),),
        notes=("Accuracies in percent.",),
        headline="test accuracy (%)",
    )
    table = TABLE.apply(table)
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from sweeps.results import METADATA_ATTR, replace_metadata

COMPARISON_KEY = b"cnnsweep.comparison"
UNITS = ("percent", "fraction", "raw")  # raw: own units (parameters, GFLOPs, seconds)
DIRECTIONS = ("higher", "lower")  # which way is better


@dataclass(frozen=True)
class Pair:
    """One compared metric: ``ours`` beside ``published``; ``delta`` (if named) is filled
    with ours − published (in percentage points for a fraction, the ratio for raw units).
    ``variant`` tells apart several ours columns compared with one published column."""

    published: str
    ours: str
    label: str
    unit: str = "percent"
    delta: str | None = None
    better: str = "higher"
    variant: str = ""

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"unit {self.unit!r} is unknown; allowed: {', '.join(UNITS)}")
        if self.better not in DIRECTIONS:
            raise ValueError(f"better {self.better!r}: allowed {', '.join(DIRECTIONS)}")

    def delta_values(self, df: pd.DataFrame) -> pd.Series:
        """ours − published per row; a missing value (None) stays missing."""
        scale = 100 if self.unit == "fraction" else 1
        out = [
            None if o is None or p is None else o / p if self.unit == "raw" else scale * (o - p)
            for o, p in zip(df[self.ours].tolist(), df[self.published].tolist(), strict=True)
        ]
        return pd.Series(out, index=df.index)


@dataclass(frozen=True)
class Comparison:
    """A paper table's contract: ``ids`` name its rows (most telling first), ``pairs``
    compare its metrics, ``notes`` say where the published numbers come from and how to
    read them, ``headline`` is the label of the metric a one-line summary quotes."""

    ids: tuple[str, ...]
    pairs: tuple[Pair, ...]
    notes: tuple[str, ...] = ()
    headline: str | None = None

    def apply(self, df: pd.DataFrame) -> pd.DataFrame:
        """``df`` with each pair's delta column right after its ours column, and this
        contract attached for :func:`sweeps.results.write_parquet` to store."""
        df = df.copy()
        for pair in self.pairs:
            if pair.delta and pair.ours in df and pair.published in df:
                df.insert(df.columns.get_loc(pair.ours) + 1, pair.delta, pair.delta_values(df))
        return self.attach(df)

    def attach(self, df: pd.DataFrame) -> pd.DataFrame:
        meta = dict(df.attrs.get(METADATA_ATTR, {}))
        meta[COMPARISON_KEY] = json.dumps(self.to_dict()).encode()
        df.attrs[METADATA_ATTR] = meta
        return df

    def to_dict(self) -> dict:
        return {
            "ids": list(self.ids),
            "pairs": [dataclasses.asdict(p) for p in self.pairs],
            "notes": list(self.notes),
            "headline": self.headline,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Comparison:
        return cls(
            ids=tuple(d["ids"]),
            pairs=tuple(Pair(**p) for p in d["pairs"]),
            notes=tuple(d.get("notes", ())),
            headline=d.get("headline"),
        )

    @classmethod
    def plain(cls, df: pd.DataFrame) -> Comparison:
        """The contract of a table written without one (by hand): ``published_<m>``
        beside ``ours_<m>`` in percent, rows named by the columns before the first
        published one, notes from ``df.attrs["notes"]``."""
        pubs = [c for c in df.columns if str(c).startswith("published_")]
        pairs = []
        for pub in pubs:
            m = pub.removeprefix("published_")
            if f"ours_{m}" in df:
                label = m.removesuffix("_pct").replace("_", " ") + " (%)"
                pairs.append(Pair(pub, f"ours_{m}", label))
        first = list(df.columns).index(pubs[0]) if pubs else 0
        notes = tuple(map(str, df.attrs.get("notes", ())))
        return cls(ids=tuple(df.columns[:first]), pairs=tuple(pairs), notes=notes)

    def row_ids(self, df: pd.DataFrame) -> list[str]:
        """The fewest leading id columns that tell the table's rows apart."""
        present = [c for c in self.ids if c in df]
        for n in range(1, len(present) + 1):
            if not df.duplicated(present[:n]).any():
                return present[:n]
        return present

    def cells(self, df: pd.DataFrame) -> pd.DataFrame:
        """Every (row, pair) with both values, long format: panel (the label), row,
        published, ours (both ×100 for fractions), diff (pp, or ours / published for raw
        units), delta (text), worse (None for raw units), unit, id0, id1."""
        ids = self.row_ids(df)
        out = []
        for pair in self.pairs:
            if pair.published not in df or pair.ours not in df:
                continue
            for _, r in df.iterrows():
                cell = _cell(pair, r, ids)
                if cell is not None:
                    out.append(cell)
        return pd.DataFrame(out)


def _row_name(r: pd.Series, ids: list[str]) -> str:
    return " / ".join(
        f"lr {r[c]:g}" if c == "lr" and isinstance(r[c], float) else str(r[c]) for c in ids
    )


def _cell(pair: Pair, r: pd.Series, ids: list[str]) -> dict | None:
    p = pd.to_numeric(r[pair.published], errors="coerce")
    v = pd.to_numeric(r[pair.ours], errors="coerce")
    if pd.isna(p) or pd.isna(v):
        return None
    scale = 100.0 if pair.unit == "fraction" else 1.0
    if pair.unit == "raw":
        diff = v / p if p else np.nan
        delta, worse = f"×{diff:.2f}", None
    else:
        diff = scale * (v - p)
        delta = f"{diff:+.1f} pp"
        worse = bool(diff > 0 if pair.better == "lower" else diff < 0)
    return {
        "panel": pair.label,
        "row": _row_name(r, ids) + (f" (ours {pair.variant})" if pair.variant else ""),
        "published": scale * p,
        "ours": scale * v,
        "diff": diff,
        "delta": delta,
        "worse": worse,
        "unit": pair.unit,
        "id0": str(r[ids[0]]) if ids else "",
        "id1": str(r[ids[1]]) if len(ids) > 1 else "",
    }


def read(path: str | Path, df: pd.DataFrame | None = None) -> Comparison:
    """The contract stored in a table's Parquet metadata; for a table without one,
    :meth:`Comparison.plain` of ``df`` (read from ``path`` when not given)."""
    meta = pq.read_schema(path).metadata or {}
    if COMPARISON_KEY in meta:
        return Comparison.from_dict(json.loads(meta[COMPARISON_KEY]))
    return Comparison.plain(pd.read_parquet(path) if df is None else df)


def notes_of(df: pd.DataFrame) -> list[str]:
    """The notes of a table built by :meth:`Comparison.apply` (for its Markdown file)."""
    raw = df.attrs.get(METADATA_ATTR, {}).get(COMPARISON_KEY)
    return list(json.loads(raw)["notes"]) if raw else list(df.attrs.get("notes", []))


def annotate(path: str | Path, comparison: Comparison) -> None:
    """Store ``comparison`` in an existing table's Parquet metadata, atomically; every
    column, value and other metadata key (provenance, pandas) is kept as it was."""
    replace_metadata(Path(path), {COMPARISON_KEY: json.dumps(comparison.to_dict()).encode()})
