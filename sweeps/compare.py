"""Ours beside published: one contract for every paper table.

A paper script declares, per table, a :class:`Comparison`: the columns that name a row,
and per compared metric a :class:`Pair` (published column, ours column, the delta column
to fill, unit, direction, label). ``Comparison.apply(df)`` fills the delta columns and
attaches the contract, which :func:`sweeps.results.write_parquet` stores in the Parquet
schema metadata under ``cnnsweep.comparison`` (JSON, see :meth:`Comparison.to_dict`).
The report reads it back (:func:`read`) instead of guessing pairs from column names.

Every published cell also gets a **verdict** (columns ``verdict``, ``verdict_reason`` and
``tolerance`` per pair, prefixed by the pair's name when a table compares several):
``reproduced`` when |ours − published| is within the tolerance, ``above`` / ``below``
otherwise, ``not_comparable`` when a forced difference makes the comparison meaningless,
with a reason ``code: detail`` whose code is one of :data:`REASONS`. The tolerance is the
larger of the contract's stated floor and twice the standard deviation of ours over
seeds (``--seeds N``; one seed: the floor alone).

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

from sweeps.results import METADATA_ATTR

COMPARISON_KEY = b"cnnsweep.comparison"
UNITS = ("percent", "fraction", "raw")  # raw: own units (parameters, GFLOPs, seconds)
DIRECTIONS = ("higher", "lower")  # which way is better
VERDICTS = ("reproduced", "above", "below", "not_comparable")
# Forced differences that make a comparison meaningless (the code before the reason's ':'):
REASONS = {
    "no_weights": "the paper started from weights that cannot be had here",
    "budget": "this preset cut what the paper ran (the detail names what)",
    "stand_in_data": "the paper's data is not available; another set stands in",
    "paper_inconsistent": "the paper's own numbers contradict each other",
    "hardware": "a speed measured on other hardware than the paper's",
}
# The floor of the tolerance in percentage points: a 10k-image test split moves in steps
# of 0.01 pp, and seeds of one recipe differ by a few tenths on MNIST.
TOLERANCE_FLOOR_PP = 1.0
# Raw units (parameters, GFLOPs): reproduced within this fraction of the published value.
RAW_TOLERANCE = 0.05


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
    # ours' standard deviation over seeds (same unit as ours) and the number of seeds
    std: str | None = None
    n: str | None = None
    # a forced reason that holds for every row of this pair ("code: detail", see REASONS)
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"unit {self.unit!r} is unknown; allowed: {', '.join(UNITS)}")
        if self.better not in DIRECTIONS:
            raise ValueError(f"better {self.better!r}: allowed {', '.join(DIRECTIONS)}")
        if self.reason is not None:
            check_reason(self.reason)

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
    tolerance_pp: float = TOLERANCE_FLOOR_PP  # the stated floor of every pair's tolerance

    def apply(self, df: pd.DataFrame) -> pd.DataFrame:
        """``df`` with each pair's delta column right after its ours column, its verdict
        columns after that, and this contract attached for
        :func:`sweeps.results.write_parquet` to store. A row's forced reason ("code:
        detail") may come in a ``not_comparable`` column (all its metrics) or in
        ``<prefix>not_comparable`` (one metric); once judged they are dropped, as each
        verdict's reason column carries them."""
        df = df.copy()
        for pair in self.pairs:
            if pair.ours not in df or pair.published not in df:
                continue
            at = df.columns.get_loc(pair.ours) + 1
            if pair.delta:
                df.insert(at, pair.delta, pair.delta_values(df))
                at += 1
            judged = self.judge(pair, df)
            for col in judged.columns:
                df.insert(at, col, judged[col])
                at += 1
        reasons = [c for c in df if c == "not_comparable" or c.endswith("_not_comparable")]
        return self.attach(df.drop(columns=reasons))

    def prefix(self, pair: Pair) -> str:
        """'' for a table with one compared metric, else the ours column's name + '_'."""
        if len(self.pairs) == 1:
            return ""
        return pair.ours.removeprefix("ours_").removesuffix("_pct") + "_"

    def verdict_columns(self, pair: Pair) -> tuple[str, str, str]:
        """(verdict, reason, tolerance) column names of ``pair``."""
        prefix, unit = self.prefix(pair), "ratio" if pair.unit == "raw" else "pp"
        return f"{prefix}verdict", f"{prefix}verdict_reason", f"{prefix}tolerance_{unit}"

    def judge(self, pair: Pair, df: pd.DataFrame) -> pd.DataFrame:
        """Per row: the verdict (None where the paper has no number), its reason and the
        tolerance it was judged with, as three columns named by :meth:`verdict_columns`."""
        names = self.verdict_columns(pair)
        # a forced reason of the row: for this metric alone, else for all of the row's
        own = f"{self.prefix(pair)}not_comparable"
        out = [
            _verdict(pair, r, _row_reason(r, (own, "not_comparable")), self.tolerance_pp)
            for _, r in df.iterrows()
        ]
        frame = pd.DataFrame(out, columns=list(names), index=df.index)
        return frame.astype({names[0]: "string", names[1]: "string", names[2]: "float64"})

    def verdicts(self, df: pd.DataFrame) -> pd.DataFrame:
        """Every published cell, long format: panel, row, verdict, reason, code (the
        reason's code), diff. Read from the table's verdict columns where it has them,
        judged now where it was written before verdicts existed."""
        ids = self.row_ids(df)
        out = []
        for pair in self.pairs:
            if pair.published not in df or pair.ours not in df:
                continue
            v, why, _ = self.verdict_columns(pair)
            judged = df[[v, why]] if v in df else self.judge(pair, df)[[v, why]]
            for (_, r), verdict, reason in zip(df.iterrows(), judged[v], judged[why], strict=True):
                if pd.isna(verdict):
                    continue
                reason = None if pd.isna(reason) else str(reason)
                out.append(
                    {
                        "panel": pair.label,
                        "row": _row_name(r, ids)
                        + (f" (ours {pair.variant})" if pair.variant else ""),
                        "verdict": str(verdict),
                        "reason": reason,
                        "code": reason.split(":")[0] if reason else None,
                    }
                )
        return pd.DataFrame(out, columns=["panel", "row", "verdict", "reason", "code"])

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
            "tolerance_pp": self.tolerance_pp,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Comparison:
        return cls(
            ids=tuple(d["ids"]),
            pairs=tuple(Pair(**p) for p in d["pairs"]),
            notes=tuple(d.get("notes", ())),
            headline=d.get("headline"),
            tolerance_pp=d.get("tolerance_pp", TOLERANCE_FLOOR_PP),
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
        units), delta (text), worse (None for raw units), unit, id0, id1, verdict (None
        in a table written before verdicts)."""
        ids = self.row_ids(df)
        out = []
        for pair in self.pairs:
            if pair.published not in df or pair.ours not in df:
                continue
            v = self.verdict_columns(pair)[0]
            for _, r in df.iterrows():
                cell = _cell(pair, r, ids)
                if cell is not None:
                    out.append(cell | {"verdict": r[v] if v in r.index else None})
        return pd.DataFrame(out)


def verdict_sentence(verdicts: pd.DataFrame) -> str:
    """'9 of 12 published cells reproduced; 1 below, 0 above; 2 not comparable here:
    budget (2)' for the cells of :meth:`Comparison.verdicts` (one or several tables)."""
    n = len(verdicts)
    if not n:
        return "no published cell to judge"
    count = verdicts["verdict"].value_counts()
    text = (
        f"{count.get('reproduced', 0)} of {n} published cells reproduced; "
        f"{count.get('below', 0)} below, {count.get('above', 0)} above"
    )
    codes = verdicts.loc[verdicts["verdict"] == "not_comparable", "code"].value_counts()
    if len(codes):
        why = ", ".join(f"{code} ({k})" for code, k in codes.items())
        text += f"; {int(codes.sum())} not comparable here: {why}"
    return text


def check_reason(reason: str) -> str:
    """``reason`` if it is ``code: detail`` with a known code; ValueError otherwise."""
    code = reason.split(":")[0].strip()
    if code not in REASONS or ":" not in reason:
        raise ValueError(
            f"not_comparable reason {reason!r}: allowed 'code: detail' with code one of "
            f"{', '.join(REASONS)}"
        )
    return reason


def _number(r: pd.Series, col: str | None) -> float:
    if col is None or col not in r.index:
        return np.nan
    return float(pd.to_numeric(r[col], errors="coerce"))


def _row_reason(r: pd.Series, columns: tuple[str, ...]) -> str | None:
    for col in columns:
        value = r.get(col) if col in r.index else None
        if isinstance(value, str) and value:
            return value
    return None


def _verdict(pair: Pair, r: pd.Series, row_reason: str | None, floor_pp: float) -> tuple:
    """(verdict, reason, tolerance) of one row's cell; (None, None, nan) where the paper
    has no number. Ours missing is a cut of the budget (the cell did not run)."""
    p, v = _number(r, pair.published), _number(r, pair.ours)
    if np.isnan(p):
        return None, None, np.nan
    reason = pair.reason or row_reason
    if reason is None and np.isnan(v):
        reason = "budget: this cell did not run in this preset"
    if pair.unit == "raw":
        tol = RAW_TOLERANCE
        if reason:
            return "not_comparable", check_reason(reason), tol
        ratio = v / p if p else np.nan
        return _side(ratio - 1, tol), None, tol
    scale = 100.0 if pair.unit == "fraction" else 1.0
    std, n = _number(r, pair.std), _number(r, pair.n)
    measured = 2 * scale * std if n >= 2 and not np.isnan(std) else 0.0
    tol = max(floor_pp, measured)
    if reason:
        return "not_comparable", check_reason(reason), tol
    return _side(scale * (v - p), tol), None, tol


def _side(diff: float, tol: float) -> str:
    if np.isnan(diff):
        return "not_comparable"
    return "reproduced" if abs(diff) <= tol else "above" if diff > 0 else "below"


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
