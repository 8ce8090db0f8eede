"""The MLflow UI, in headless Chromium: a real smoke sweep's experiment lists one child run
per trial with ``val_acc``/``test_acc`` columns whose values are MLflow's, and its parent
run shows the table and heat-map artifacts, the heat-map rendered. The browser code is
``docs/screenshots.py`` (which makes the README's screenshots); this test checks what it read
against MLflow's API and saves the screenshots (also to ``$CNNSWEEP_SCREENSHOT_DIR`` if set).

Needs Debian's ``chromium`` and the ``playwright`` Python package (no browser download);
without them it fails in CI and is skipped elsewhere."""

from __future__ import annotations

import importlib.util
import math
import os
import sys
from pathlib import Path

import pytest
from conftest import REPO, free_port, start_mlflow, stop_mlflow
from mlflow.tracking import MlflowClient
from PIL import Image

from sweeps.mnist_optimizers import SWEEP
from sweeps.results import load_results
from sweeps.runner import main


def load_screenshots():
    """``docs/screenshots.py`` is a script, not part of the package: load it by path."""
    name = "docs_screenshots"
    spec = importlib.util.spec_from_file_location(name, REPO / "docs" / "screenshots.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


shots = load_screenshots()


def missing_browser() -> str:
    """What the browser test lacks, in words; empty when it can run."""
    missing = []
    if importlib.util.find_spec("playwright") is None:
        missing.append("the playwright Python package (pip install playwright)")
    if not Path(shots.CHROMIUM).is_file():
        missing.append(f"{shots.CHROMIUM} (apt-get install chromium)")
    return " and ".join(missing)


MISSING = missing_browser()


def mlflow_format(value: float) -> str:
    """MLflow's ``Utils.formatMetric``, as the runs table shows a metric."""
    if value == 0:
        return "0"
    if abs(value) < 0.001:
        return f"{value:.3e}".replace("e-0", "e-")  # JS toExponential(3)
    digits = 3 if abs(value) < 10 else 2 if abs(value) < 100 else 1
    rounded = math.floor(value * 10**digits + 0.5) / 10**digits  # JS Math.round
    return repr(rounded).removesuffix(".0")  # JS Number.toString


@pytest.fixture
def own_mlflow(tmp_path):
    """A private MLflow server: the experiment holds this sweep's runs only."""
    port = free_port()
    proc = start_mlflow(tmp_path / "mlflow", port)
    yield f"http://127.0.0.1:{port}"
    stop_mlflow(proc)


@pytest.mark.slow
@pytest.mark.skipif(
    bool(MISSING) and not os.environ.get("CI"), reason=f"the MLflow UI test needs {MISSING}"
)
def test_mlflow_ui_lists_trials_and_parent_artifacts(
    ray_local, own_mlflow, tiny_data_root, tmp_path
):
    if MISSING:  # CI must run it
        pytest.fail(f"CI: the MLflow UI test needs {MISSING}")
    args = ["--budget", "smoke", "--optimizers", "adam", "--name", "smoke-ui"]  # 2 trials: lr x 2
    args += ["--data-root", str(tiny_data_root), "--tracking-uri", own_mlflow]
    args += ["--results-dir", str(tmp_path / "res"), "--storage-path", str(tmp_path / "ray")]
    assert main(SWEEP, args) == 0
    trials = load_results("mnist_optimizers", tmp_path / "res")["trials"]
    assert len(trials) == 2

    client = MlflowClient(own_mlflow)
    exp = client.get_experiment_by_name("mnist_optimizers")
    runs = {r.info.run_id: r for r in client.search_runs([exp.experiment_id])}
    (parent,) = [r for r in runs.values() if "mlflow.parentRunId" not in r.data.tags]
    children = {rid: r for rid, r in runs.items() if rid != parent.info.run_id}
    assert set(children) == set(trials["mlflow_run_id"])

    out_dirs = [tmp_path / "screenshots"]
    if os.environ.get("CNNSWEEP_SCREENSHOT_DIR"):
        out_dirs.append(Path(os.environ["CNNSWEEP_SCREENSHOT_DIR"]))
    view = shots.capture(own_mlflow, exp.experiment_id, parent.info.run_id, out_dirs)

    # The runs table, parent expanded: the parent row plus exactly one row per trial.
    assert set(view.rows) == {parent.info.run_id, *children}
    assert view.matching == f"{len(runs)} matching runs"
    # the link's saved view: the sweep's columns, MLflow's own defaults hidden
    want = {"params.model", "params.optimizer", "params.lr", "metrics.val_acc", "metrics.test_acc"}
    assert want | {"tags.stop_reason"} <= set(view.headers)
    assert not {"attributes.Dataset", "attributes.Source", "attributes.Models"} & set(view.headers)
    for rid, child in children.items():
        cells = view.rows[rid]
        assert cells["attributes.Run Name"].splitlines()[-1] == child.info.run_name
        assert cells["params.lr"] == child.data.params["lr"]
        for metric in ("val_acc", "test_acc"):
            assert cells[f"metrics.{metric}"] == mlflow_format(child.data.metrics[metric])
        assert cells["tags.stop_reason"] == child.data.tags["stop_reason"]
    row = trials.set_index("mlflow_run_id").loc[list(children)]
    assert [float(view.rows[r]["metrics.test_acc"]) for r in children] == pytest.approx(
        row["test_acc"].tolist(), abs=5e-4
    )

    # The parent run's Artifacts tab: what MLflow stored, the heat-map opened and rendered.
    stored = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"table1.md", "table1.parquet", "heatmap_test_acc.png"} <= set(view.artifacts)
    assert set(view.artifacts) == stored
    heatmap = client.download_artifacts(parent.info.run_id, "heatmap_test_acc.png", tmp_path)
    assert view.image_width == Image.open(heatmap).width > 0

    assert len(view.screenshots) == 2 * len(out_dirs)
    for png in view.screenshots:
        assert Image.open(png).size == (shots.VIEWPORT["width"], shots.VIEWPORT["height"])
