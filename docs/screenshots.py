"""Screenshots of a sweep for the README: MLflow's runs table as the link a sweep prints
opens it (the parent run expanded to one child run per trial, the sweep's columns), the parent
run's artifacts with the test-accuracy heat-map open, and Optuna Dashboard's view of the
sweep's study (its history, and the trial list with the pruned trials marked).

    python docs/screenshots.py --tracking-uri http://127.0.0.1:5000 --experiment mnist_optimizers \
        --dashboard http://127.0.0.1:8080

writes ``docs/img/mlflow_runs.png``, ``docs/img/mlflow_parent_artifacts.png`` and, with
``--dashboard``, ``optuna_history.png`` and ``optuna_trials.png`` (the newest finished parent
run, or ``--run NAME``; its study has the same name). It drives Debian's Chromium (``apt-get
install chromium``; ``--chromium`` or ``$CNNSWEEP_CHROMIUM`` for another binary) headless
through Playwright's Python package; no browser is downloaded. ``tests/test_mlflow_ui.py``
and ``tests/test_dashboard.py`` run the same code against smoke sweeps and check what it read
against MLflow's and the dashboard's APIs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sweeps.experiment_view import experiment_url

CHROMIUM = os.environ.get("CNNSWEEP_CHROMIUM", "/usr/bin/chromium")
# No sandbox (CI runs as root), no GPU, and none of Chromium's own background traffic:
# without these it keeps trying the network (updates, sync, QUIC) from a closed machine.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1500, "height": 900}  # a laptop's browser window
TIMEOUT_MS = 180_000  # the React app on 2 busy cores: generous, never a timing assertion
RUNS_PNG, ARTIFACTS_PNG = "mlflow_runs.png", "mlflow_parent_artifacts.png"


@dataclass
class UiView:
    """What the UI showed: the runs table (run id -> column -> cell text, columns named
    like ``metrics.val_acc``), its column headers, the parent run's artifact names and the
    natural width of the opened image (0 when it did not render)."""

    rows: dict[str, dict[str, str]] = field(default_factory=dict)
    headers: list[str] = field(default_factory=list)
    matching: str = ""
    artifacts: list[str] = field(default_factory=list)
    image_width: int = 0
    screenshots: list[Path] = field(default_factory=list)


@contextlib.contextmanager
def chromium_page(executable: str = CHROMIUM) -> Iterator:
    """A Playwright page in headless system Chromium, 1500x900, with generous timeouts."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(TIMEOUT_MS)
            yield page
        finally:
            browser.close()


def _close_assistant(page) -> None:
    """The "MLflow Assistant" side panel takes a third of the width; a user closes it
    (MLflow remembers that). It may render after the table, or not at all."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    close = page.get_by_role("button", name="Close", exact=True).first
    with contextlib.suppress(PlaywrightTimeout):
        close.wait_for(timeout=10_000)
        close.click()


def _unfocus(page) -> None:
    """No hover highlight or focus ring in a screenshot."""
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.mouse.move(0, VIEWPORT["height"] - 1)


def _table(page) -> tuple[dict[str, dict[str, str]], list[str]]:
    """Cell texts by run id (AG Grid splits each row over pinned and centre containers,
    joined here by row-id) and the header names by column id."""
    rows, headers = page.evaluate(
        """() => {
        const rows = {};
        for (const r of document.querySelectorAll('.ag-row[row-id]')) {
            const cells = rows[r.getAttribute('row-id')] ??= {};
            for (const c of r.querySelectorAll('[col-id]'))
                cells[c.getAttribute('col-id')] = c.innerText.trim();
        }
        const headers = {};
        for (const h of document.querySelectorAll('.ag-header-cell[col-id]'))
            headers[h.getAttribute('col-id')] = h.innerText.trim();
        return [rows, headers];
    }"""
    )
    name = lambda col: col.replace("`", "")  # noqa: E731  metrics.`val_acc` -> metrics.val_acc
    rows = {rid: {name(c): t for c, t in cells.items()} for rid, cells in rows.items()}
    return rows, [name(c) for c, text in headers.items() if text]


def expand_parent(page, parent_run_id: str) -> None:
    """Child runs sit under their parent, collapsed; its run-name cell has the toggle."""
    parent = page.locator(f'.ag-row[row-id="{parent_run_id}"]').first
    parent.wait_for()
    before = page.locator(".ag-center-cols-container .ag-row").count()
    parent.locator("button[data-component-id*=runnamecellrenderer]").click()
    page.wait_for_function(
        "n => document.querySelectorAll('.ag-center-cols-container .ag-row').length > n",
        arg=before,
    )


def show_runs(
    page, uri: str, experiment_id: str, parent_run_id: str
) -> tuple[dict[str, dict[str, str]], list[str], str]:
    """Open the link a sweep prints (``experiment_view.experiment_url``: the runs table with
    the sweep's saved columns, nothing chosen by hand) and expand the parent run."""
    page.goto(experiment_url(uri, experiment_id))
    expand_parent(page, parent_run_id)
    _unfocus(page)
    matching = page.get_by_text(re.compile(r"\d+ matching runs?")).first.inner_text()
    rows, headers = _table(page)
    return rows, headers, matching


def show_artifact(page, parent_run_id: str, image: str) -> tuple[list[str], int]:
    """From the runs table, open the parent run's Artifacts tab and click ``image``;
    returns the listed artifact names and the displayed image's natural width."""
    _close_assistant(page)  # it would cover a third of the image
    page.locator(f'.ag-row[row-id="{parent_run_id}"] a[href*="/runs/{parent_run_id}"]').click()
    page.get_by_role("tab", name="Artifacts").click()
    page.get_by_text(image, exact=True).click()
    shown = page.locator(f'img[alt="{image}"]').first
    shown.wait_for()
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=shown.element_handle()
    )
    width = shown.evaluate("img => img.naturalWidth")
    names = page.get_by_test_id("artifact-tree-node").evaluate_all(
        "ns => ns.map(n => n.getAttribute('artifact-name'))"
    )
    _unfocus(page)
    return names, width


def capture(
    uri: str,
    experiment_id: str,
    parent_run_id: str,
    out_dirs: Sequence[Path],
    image: str = "heatmap_test_acc.png",
    executable: str = CHROMIUM,
) -> UiView:
    """Both screenshots into every folder of ``out_dirs``; returns what the UI showed."""
    view = UiView()
    dirs = [Path(d) for d in out_dirs]
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    with chromium_page(executable) as page:
        view.rows, view.headers, view.matching = show_runs(page, uri, experiment_id, parent_run_id)
        for d in dirs:
            page.screenshot(path=d / RUNS_PNG)
            view.screenshots.append(d / RUNS_PNG)
        view.artifacts, view.image_width = show_artifact(page, parent_run_id, image)
        for d in dirs:
            page.screenshot(path=d / ARTIFACTS_PNG)
            view.screenshots.append(d / ARTIFACTS_PNG)
    return view


# ------------------------------------------------------------------- optuna-dashboard

STUDY_TRIALS_PNG, STUDY_HISTORY_PNG = "optuna_trials.png", "optuna_history.png"
# The trials page's list: one button per trial, "Trial N" and its state chips.
TRIAL_LIST = r"""() => {
    const count = [...document.querySelectorAll('span, p, h6, div')]
        .map(e => e.childElementCount ? '' : e.innerText.trim())
        .find(t => /^\d+ Trials?$/.test(t));
    const trials = [...document.querySelectorAll('.MuiListItemButton-root')]
        .map(b => [b.innerText.split('\n')[0].trim(),
                   [...b.querySelectorAll('.MuiChip-label')].map(c => c.innerText.trim())])
        .filter(([name]) => /^Trial \d+$/.test(name));
    // loaded: the heading's count is the list's length (it shows "0 Trials" before)
    return count && trials.length && parseInt(count) === trials.length && [count, trials];
}"""


@dataclass
class StudyView:
    """What optuna-dashboard showed of a study: the trial count it printed ("4 Trials"),
    each trial's chips by trial number ({3: ["Pruned"]}), the screenshots."""

    count: str = ""
    chips: dict[int, list[str]] = field(default_factory=dict)
    screenshots: list[Path] = field(default_factory=list)


def study_id(dashboard: str, name: str) -> int:
    """The dashboard's id of the study ``name`` (its JSON API lists every study)."""
    import json
    import urllib.request

    with urllib.request.urlopen(f"{dashboard.rstrip('/')}/api/studies", timeout=30) as r:
        studies = json.load(r)["study_summaries"]
    ids = [s["study_id"] for s in studies if s["study_name"] == name]
    if not ids:
        raise LookupError(f"no study {name!r} at {dashboard}: {[s['study_name'] for s in studies]}")
    return ids[0]


def capture_study(
    dashboard: str, name: str, out_dirs: Sequence[Path], executable: str = CHROMIUM
) -> StudyView:
    """The study's History page and its trial list (states as chips) into every folder."""
    view, sid = StudyView(), study_id(dashboard, name)
    base = f"{dashboard.rstrip('/')}/dashboard/studies/{sid}"
    with chromium_page(executable) as page:
        page.goto(base)
        page.locator(".js-plotly-plot .scatterlayer .point").first.wait_for()
        _unfocus(page)
        _shoot(page, out_dirs, STUDY_HISTORY_PNG, view.screenshots)
        page.goto(f"{base}/trials")
        view.count, trials = page.wait_for_function(TRIAL_LIST).json_value()
        view.chips = {int(t.split()[1]): chips for t, chips in trials}
        _unfocus(page)
        _shoot(page, out_dirs, STUDY_TRIALS_PNG, view.screenshots)
    return view


def _shoot(page, out_dirs: Sequence[Path], name: str, into: list[Path]) -> None:
    for d in out_dirs:
        Path(d).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=Path(d) / name)
        into.append(Path(d) / name)


def newest_parent(client, experiment: str, run_name: str | None = None):
    """The newest finished top-level run of ``experiment`` (named ``run_name`` if given)."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise SystemExit(f"error: no MLflow experiment {experiment!r}")
    query = "attributes.status = 'FINISHED'"
    if run_name:
        query += f" and attributes.run_name = '{run_name}'"
    runs = client.search_runs(
        [exp.experiment_id], query, max_results=200, order_by=["attributes.start_time DESC"]
    )
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    if not parents:
        raise SystemExit(f"error: no finished parent run in {experiment!r} ({query})")
    return exp.experiment_id, parents[0]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--tracking-uri",
        default=os.environ.get("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000"),
        help="MLflow server (default $MLFLOW_TRACKING_URI or http://127.0.0.1:5000)",
    )
    p.add_argument("--experiment", default="mnist_optimizers", help="experiment (sweep) name")
    p.add_argument("--run", help="parent run name (default: the newest finished one)")
    p.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent / "img", help="folder"
    )
    p.add_argument("--chromium", default=CHROMIUM, help=f"browser binary (default {CHROMIUM})")
    p.add_argument("--dashboard", help="Optuna Dashboard URL (make up: http://127.0.0.1:8080)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from mlflow.tracking import MlflowClient

    exp_id, parent = newest_parent(MlflowClient(args.tracking_uri), args.experiment, args.run)
    view = capture(
        args.tracking_uri, exp_id, parent.info.run_id, [args.out], executable=args.chromium
    )
    print(f"{parent.info.run_name}: {len(view.rows)} runs in the table ({view.matching})")
    shots = view.screenshots
    if args.dashboard:
        study = capture_study(args.dashboard, parent.info.run_name, [args.out], args.chromium)
        print(f"study {parent.info.run_name}: {study.count}")
        shots += study.screenshots
    for path in shots:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
