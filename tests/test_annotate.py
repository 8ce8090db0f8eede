"""`python -m sweeps.annotate results/<sweep>`: the committed MNIST run's paper table is
rebuilt from its own trials with the current contract; the measurements are untouched."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from sweeps import annotate
from sweeps.compare import VERDICTS
from sweeps.importance import importance_table
from sweeps.provenance import load_provenance

COMMITTED = Path(__file__).resolve().parents[1] / "results" / "mnist_optimizers"


def test_rebuilds_tables_and_report_from_committed_trials(tmp_path):
    folder = tmp_path / "mnist_optimizers"
    shutil.copytree(COMMITTED, folder)
    trials_before = (folder / "trials.parquet").read_bytes()
    # a table from before verdicts: only the published and ours columns
    old = pd.read_parquet(folder / "table1.parquet")
    old[["model", "optimizer", "lr", "published_test_acc_pct", "ours_test_acc_pct"]].to_parquet(
        folder / "table1.parquet"
    )
    (folder / "report.md").unlink()
    (folder / "importance.parquet").unlink()  # results from before importance existed

    assert annotate.main([str(folder)]) == 0

    table = pd.read_parquet(folder / "table1.parquet")
    published = table[table["published_test_acc_pct"].notna()]
    assert len(published) == 12 and published["verdict"].isin(VERDICTS).all()
    assert table.equals(old.reset_index(drop=True)[table.columns].astype(table.dtypes))
    assert (folder / "trials.parquet").read_bytes() == trials_before
    prov = load_provenance(folder / "table1.parquet")
    assert prov["tables_rebuilt"]["command"] == f"python -m sweeps.annotate {folder}"
    assert prov["command"] == load_provenance(folder / "trials.parquet")["command"]
    report = (folder / "report.md").read_text()
    assert report.splitlines()[2].startswith("- Verdicts: ")
    # the importances, from the same trials, and the report's section drawn from them
    imp = pd.read_parquet(folder / "importance.parquet")
    trials = pd.read_parquet(folder / "trials.parquet")
    pd.testing.assert_frame_equal(imp, importance_table(trials))
    assert set(imp["param"]) == {"model", "optimizer", "lr"}
    assert "## What matters: hyperparameter importance" in report
    for fig in ("importance.png", "parallel_coordinates.png"):
        assert f"](report/{fig})" in report and (folder / "report" / fig).stat().st_size > 0


def test_an_unknown_folder_names_the_known_sweeps(tmp_path):
    with pytest.raises(SystemExit, match="no paper script named 'nope'.*mnist_optimizers"):
        annotate.main([str(tmp_path / "nope")])
