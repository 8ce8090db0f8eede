"""The ``cnnsweep`` console script: the installed entry point, each command's help, and
its answers on real result files (the end-to-end run is in test_cli_e2e)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pandas as pd
import pytest

from sweeps.cli import available_sweeps
from sweeps.results import write_parquet

CNNSWEEP = shutil.which("cnnsweep") or str(Path(sys.executable).with_name("cnnsweep"))
SWEEPS = {"mnist_optimizers", "cifar_cnns", "chromosome_baselines", "anet_generalization"}


def cli(*args, cwd=None, env=None) -> subprocess.CompletedProcess:
    # a hang guard, not a speed target: `run` is a whole smoke sweep (~100 s on 2 idle cores)
    return subprocess.run(
        [CNNSWEEP, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=600
    )


def test_the_console_script_is_installed_and_lists_its_commands():
    out = cli("--help")
    assert out.returncode == 0, out.stderr
    for command in ("list", "run", "resume", "runs", "show", "report"):
        assert f"    {command} " in out.stdout
    assert "ray job submit --working-dir . -- cnnsweep run mnist_optimizers" in out.stdout


@pytest.mark.parametrize(
    ("command", "flags"),
    [
        ("list", ["--results-dir", "--format"]),
        ("runs", ["--storage-path", "--format"]),
        ("show", ["--results-dir", "--run", "--columns", "--format"]),
        ("report", ["--results-dir", "--tracking-uri", "--run-id"]),
        ("run", ["SWEEP", "FLAGS"]),
    ],
)
def test_each_command_explains_its_flags(command, flags):
    out = cli(command, "--help")
    assert out.returncode == 0, out.stderr
    for flag in flags:
        assert flag in out.stdout, (command, flag)


def test_run_help_is_the_sweeps_own():
    out = cli("run", "mnist_optimizers", "--help")
    assert out.returncode == 0
    assert out.stdout.startswith("usage: cnnsweep run mnist_optimizers")
    assert "--tracking-uri" in out.stdout and "Table I of paper 003" in out.stdout


def test_sweeps_are_found_without_importing_them():
    assert set(available_sweeps()) == SWEEPS
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, sweeps.cli as c; c.available_sweeps(); "
            "print('torch' in sys.modules, 'mlflow' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.split() == ["False", "False"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "nope"], "sweep 'nope' is unknown; allowed: anet_generalization"),
        (["show", "nope"], "sweep 'nope' is unknown"),
        (["run", "mnist_optimizers", "--budget", "huge"], "--budget 'huge' is unknown"),
        (["resume", "mnist_optimizers", "--budget", "huge"], "--budget 'huge' is unknown"),
    ],
)
def test_bad_input_is_a_clear_error(args, needle, tmp_path):
    out = cli(*args, cwd=tmp_path)
    assert out.returncode != 0
    assert needle in out.stderr + out.stdout
    assert not (tmp_path / "results").exists()


@pytest.fixture
def results(tmp_path) -> Path:
    """A published-looking mnist_optimizers folder written with the project's writers."""
    folder = tmp_path / "results" / "mnist_optimizers"
    prov = {"date_utc": "2026-01-02T03:04:05Z", "budget": "cpu", "trials": 2}
    table = pd.DataFrame(
        {
            "model": ["resnet18", "vgg16"],
            "lr": [0.01, 0.1],
            "published_test_acc_pct": [99.4, 99.1],
            "ours_test_acc_pct": [96.35, 10.1],
        }
    )
    write_parquet(table, folder / "table1.parquet", prov)
    write_parquet(pd.DataFrame({"trial_id": ["a", "b"]}), folder / "trials.parquet", prov)
    (folder / "provenance.json").write_text(json.dumps(prov))
    return tmp_path / "results"


def test_list_reports_what_each_sweep_published(results):
    out = cli("list", "--results-dir", results, "--format", "json")
    rows = {r["sweep"]: r for r in json.loads(out.stdout)}
    assert set(rows) == SWEEPS
    assert rows["mnist_optimizers"]["results"] == "2026-01-02T03:04:05Z"
    assert (
        rows["mnist_optimizers"]["tables"] == "table1" and rows["mnist_optimizers"]["trials"] == 2
    )
    assert rows["cifar_cnns"]["results"] == "none"
    text = cli("list", "--results-dir", results).stdout.splitlines()
    assert text[0].split()[:3] == ["SWEEP", "RESULTS", "BUDGET"]


def test_show_prints_the_table_in_each_format(results):
    csv = cli("show", "mnist_optimizers", "--results-dir", results, "--format", "csv")
    assert csv.returncode == 0, csv.stderr
    df = pd.read_csv(StringIO(csv.stdout))
    assert df["ours_test_acc_pct"].tolist() == [96.35, 10.1]
    md = cli(
        "show",
        "mnist_optimizers",
        "table1",
        "--results-dir",
        results,
        "--columns",
        "model,ours_test_acc_pct",
    ).stdout
    assert md.splitlines()[:3] == [
        "| model | ours_test_acc_pct |",
        "|---|---|",
        "| resnet18 | 96.35 |",
    ]
    js = cli("show", "mnist_optimizers", "trials", "--results-dir", results, "--format", "json")
    assert json.loads(js.stdout) == [{"trial_id": "a"}, {"trial_id": "b"}]
    bad = cli("show", "mnist_optimizers", "table9", "--results-dir", results)
    assert bad.returncode == 2 and "allowed: table1, trials" in bad.stderr
    col = cli("show", "mnist_optimizers", "--results-dir", results, "--columns", "nope")
    assert col.returncode == 2 and "columns ['nope'] are not in table1" in col.stderr
    none = cli("show", "cifar_cnns", "--results-dir", results)
    assert none.returncode == 2 and "no Parquet tables" in none.stderr


def test_runs_lists_runs_under_the_storage_path(tmp_path):
    store = tmp_path / "ray"
    for name, sweep, status in (("a", "mnist_optimizers", "finished"), ("b", "cifar_cnns", None)):
        state = store / ".cnnsweep" / name
        state.mkdir(parents=True)
        meta = {"sweep": sweep, "mlflow": {"parent_run_id": f"run-{name}"}}
        if status:
            meta["status"] = status
        (state / "cnnsweep.json").write_text(json.dumps(meta))
        for t in range(2):
            (store / name / f"train_trial_{t}").mkdir(parents=True)
    rows = json.loads(cli("runs", "--storage-path", store, "--format", "json").stdout)
    got = {r["name"]: (r["sweep"], r["status"], r["trials"], r["mlflow_parent_run"]) for r in rows}
    assert got == {
        "a": ("mnist_optimizers", "finished", 2, "run-a"),
        "b": ("cifar_cnns", "unfinished", 2, "run-b"),
    }
    only = json.loads(cli("runs", "cifar_cnns", "--storage-path", store, "--format", "json").stdout)
    assert [r["name"] for r in only] == ["b"]
    empty = cli("runs", "--storage-path", tmp_path / "none")
    assert empty.returncode == 0 and "no runs under" in empty.stdout


def test_runs_of_a_dead_driver_are_closed_and_shown_as_died(mlflow_server, tmp_path):
    """A SIGKILLed driver leaves its MLflow parent and children RUNNING and its sidecar
    "running". The next sweep on that host closes them (KILLED, with how to resume);
    a live driver, a reused pid and another host's run are told apart."""
    from mlflow.tracking import MlflowClient

    from sweeps.run_record import close_dead_runs, driver_record

    client = MlflowClient(mlflow_server)
    exp = client.create_experiment(f"dead-{tmp_path.name}")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    me = driver_record()
    drivers = {
        "dead": {**me, "pid": int(dead.stdout), "pid_started": 1.0},
        "reused": {**me, "pid_started": me["pid_started"] - 3600},  # same pid, another process
        "alive": me,
        "elsewhere": {**me, "host": "gpu-node-7"},
    }
    store, runs = tmp_path / "ray", {}
    for name, driver in drivers.items():
        parent = client.create_run(exp, run_name=name).info.run_id
        tag = {"mlflow.parentRunId": parent}
        running = client.create_run(exp, run_name=f"{name}-t1", tags=tag).info.run_id
        finished = client.create_run(exp, run_name=f"{name}-t0", tags=tag).info.run_id
        client.set_terminated(finished, "FINISHED")
        runs[name] = (parent, running, finished)
        meta = {"sweep": "mnist_optimizers", "status": "running", "driver": driver,
                "mlflow": {"experiment_id": exp, "parent_run_id": parent}}  # fmt: skip
        (store / ".cnnsweep" / name).mkdir(parents=True)
        (store / ".cnnsweep" / name / "cnnsweep.json").write_text(json.dumps(meta))

    shown = json.loads(cli("runs", "--storage-path", store, "--format", "json").stdout)
    assert {r["name"]: r["status"] for r in shown} == {
        "dead": "died", "reused": "died", "alive": "running",
        "elsewhere": "running on gpu-node-7",
    }  # fmt: skip
    assert close_dead_runs(client, store, "cifar_cnns") == []  # another sweep's: untouched
    assert close_dead_runs(client, store, "mnist_optimizers") == ["dead", "reused"]

    def status(rid):
        return client.get_run(rid).info.status

    for name, (parent, running, finished) in runs.items():
        closed = name in ("dead", "reused")
        want = "KILLED" if closed else "RUNNING"
        assert (status(parent), status(running), status(finished)) == (want, want, "FINISHED")
        note = client.get_run(parent).data.tags.get("cnnsweep.status", "")
        assert (f"cnnsweep resume mnist_optimizers --name {name}" in note) == closed
        side = json.loads((store / ".cnnsweep" / name / "cnnsweep.json").read_text())
        assert side["status"] == ("died" if closed else "running")
    assert close_dead_runs(client, store, "mnist_optimizers") == []  # once is enough


@pytest.mark.slow
def test_a_sweep_through_the_cli_end_to_end(mlflow_server, tiny_data_root, tmp_path):
    """`cnnsweep run` (a private Ray, as a user without a cluster), then the commands that
    read what it left: runs, show, report; the report is on the parent MLflow run."""
    from mlflow.tracking import MlflowClient

    res, store = tmp_path / "res", tmp_path / "ray"
    # progress from the first batch on (the smoke epochs are far shorter than the 30 s
    # after which a real epoch starts to show it); output captured, so not a terminal
    env = {**os.environ, "CNNSWEEP_PROGRESS_AFTER_S": "0", "CNNSWEEP_PROGRESS_EVERY_S": "0"}
    run = cli(
        "run", "mnist_optimizers", "--budget", "smoke", "--data-root", tiny_data_root,
        "--tracking-uri", mlflow_server, "--results-dir", res, "--storage-path", store,
        "--name", "via-cli", cwd=tmp_path, env=env,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    # a log gets plain progress lines from every trial's workers, no bar redraws
    progress = [line for line in run.stdout.splitlines() if " images (" in line]
    assert any(
        re.search(r"epoch 1/\d+: \d+/\d+ images \(\d+ %\), [\d.]+ img/s", x) for x in progress
    )
    assert sum("epoch done in" in x for x in progress) >= 4, progress  # >= 1 epoch x 4 trials
    assert not [x for x in progress if "\x1b" in x or "\r" in x]
    assert "\x1b[A" not in run.stdout + run.stderr  # tqdm's cursor-up of a redrawn bar
    rows = json.loads(cli("runs", "--storage-path", store, "--format", "json").stdout)
    assert [(r["name"], r["status"], r["trials"]) for r in rows] == [("via-cli", "finished", 4)]
    table = cli("show", "mnist_optimizers", "--results-dir", res, "--format", "json")
    rows_shown = json.loads(table.stdout)
    # the grid rows are every published cell that names its optimizer plus our cells; ours
    # fills exactly the smoke grid, the paper's number beside its two lr-0.001 cells
    ran = {
        (r["model"], r["optimizer"], r["lr"]): r["published_test_acc_pct"]
        for r in rows_shown
        if r["row"] == "grid" and r["ours_test_acc_pct"] is not None
    }
    assert set(ran) == {("resnet18", o, lr) for o in ("sgd", "adam") for lr in (0.001, 0.01)}
    assert {k: v for k, v in ran.items() if v is not None} == {
        ("resnet18", "sgd", 0.001): 99.4,
        ("resnet18", "adam", 0.001): 98.3,
    }

    sweep_dir = res / "mnist_optimizers"
    md = (sweep_dir / "report.md").read_text()
    assert "## ASHA's stopping decisions" in md and "## Provenance" in md
    parent = rows[0]["mlflow_parent_run"]
    client = MlflowClient(mlflow_server)
    at_root = {a.path for a in client.list_artifacts(parent)}
    assert {"report.md", "report.html", "report"} <= at_root
    logged = {a.path for a in client.list_artifacts(parent, "report")}
    assert {f"report/{p.name}" for p in (sweep_dir / "report").iterdir()} == logged
    # re-rendering from the tables alone gives the same Markdown
    again = cli("report", "mnist_optimizers", "--results-dir", res)
    assert again.returncode == 0, again.stderr
    assert (sweep_dir / "report.md").read_text() == md
