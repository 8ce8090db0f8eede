"""Verdicts: every published cell is reproduced, above, below, or not comparable with a
forced reason; the tolerance is max(floor, 2 x the std over seeds)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sweeps.compare import Comparison, Pair, verdict_sentence
from sweeps.results import write_parquet

PAIR = Pair("published_pct", "ours_pct", "test accuracy (%)", delta="delta_pp", std="std_pp", n="n")
TABLE = Comparison(ids=("cell",), pairs=(PAIR,), tolerance_pp=1.0)


def judged(**cols) -> pd.DataFrame:
    return TABLE.apply(pd.DataFrame(cols))


def test_each_cell_gets_a_verdict_from_its_delta_and_tolerance():
    t = judged(
        cell=["a", "b", "c", "d", "e", "f"],
        published_pct=[99.0, 99.0, 99.0, 99.0, 99.0, np.nan],
        ours_pct=[98.5, 97.0, 97.0, 100.5, np.nan, 90.0],
        # c: 1.2 pp std over 3 seeds widens its tolerance to 2.4 pp; b: one seed, the floor
        std_pp=[0.1, np.nan, 1.2, 0.2, np.nan, 0.0],
        n=[3, 1, 3, 3, 0, 3],
    )
    expected = ["reproduced", "below", "reproduced", "above", "not_comparable"]
    assert t["verdict"].tolist()[:5] == expected
    assert pd.isna(t["verdict"].iloc[5])  # the paper has no number there: no verdict
    assert t["tolerance_pp"].tolist()[:4] == pytest.approx([1.0, 1.0, 2.4, 1.0])
    assert t["verdict_reason"].iloc[4] == "budget: this cell did not run in this preset"
    cols = list(t.columns)  # verdict columns follow the delta
    assert cols[cols.index("delta_pp") + 1 : cols.index("delta_pp") + 4] == [
        "verdict",
        "verdict_reason",
        "tolerance_pp",
    ]


def test_a_row_reason_makes_the_cell_not_comparable_and_an_unknown_code_is_refused():
    t = judged(
        cell=["vgg", "resnet"],
        published_pct=[99.1, 99.4],
        ours_pct=[11.0, 99.0],
        not_comparable=["no_weights: the paper fine-tuned ImageNet weights", None],
    )
    assert t["verdict"].tolist() == ["not_comparable", "reproduced"]
    assert t["verdict_reason"].iloc[0].startswith("no_weights:")
    with pytest.raises(ValueError, match="'guess: it looks off'.*no_weights, budget"):
        bad = ["guess: it looks off"]
        judged(cell=["x"], published_pct=[1.0], ours_pct=[1.0], not_comparable=bad)


def test_verdicts_survive_parquet_and_are_counted(tmp_path):
    t = judged(
        cell=["a", "b", "c"],
        published_pct=[99.0, 99.0, 99.0],
        ours_pct=[98.9, 90.0, np.nan],
        std_pp=[0.1, 0.1, np.nan],
        n=[3, 3, 0],
    )
    write_parquet(t, tmp_path / "t.parquet", {"command": "test"})
    for engine in ("pyarrow", "fastparquet"):
        back = pd.read_parquet(tmp_path / "t.parquet", engine=engine)
        assert back["verdict"].tolist() == ["reproduced", "below", "not_comparable"]
    v = TABLE.verdicts(pd.read_parquet(tmp_path / "t.parquet"))
    assert verdict_sentence(v) == (
        "1 of 3 published cells reproduced; 1 below, 0 above; 1 not comparable here: budget (1)"
    )


def test_raw_units_are_judged_by_ratio_and_a_pair_reason_covers_every_row():
    table = Comparison(
        ids=("model",),
        pairs=(
            Pair("pub_params", "ours_params", "parameters (millions)", unit="raw"),
            Pair(
                "pub_s",
                "ours_s",
                "inference (s)",
                unit="raw",
                reason="hardware: measured on 2 CPU cores, the paper on an RTX 2080Ti",
            ),
        ),
    )
    t = table.apply(
        pd.DataFrame(
            {
                "model": ["a", "b"],
                "pub_params": [2.255, 25.70],
                "ours_params": [2.254, 23.70],
                "pub_s": [8.6, 50.0],
                "ours_s": [30.0, 200.0],
            }
        )
    )
    assert t["params_verdict"].tolist() == ["reproduced", "below"]
    assert t["s_verdict"].tolist() == ["not_comparable", "not_comparable"]
    assert t["s_verdict_reason"].str.startswith("hardware:").all()
