"""The sweep report: rendered from tiny Parquet tables written by the project's own
writers (no Ray), with and without ASHA's decision log, and logged to a real MLflow."""

from __future__ import annotations

import re
import shutil
import threading

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from sweeps import doc, report
from sweeps.compare import Comparison, Pair
from sweeps.results import publish, to_markdown, write_parquet, write_text

PROV = {
    "command": "sweeps/toy.py --budget cpu",
    "date_utc": "2026-01-01T00:00:00Z",
    "git_commit": "abc123",
    "hardware": {"cpu": "toy CPU", "cpu_count": 2, "gpus": []},
    "versions": {"torch": "2.x", "ray": "2.x"},
    "sweep": "toy",
    "budget": "cpu",
    "budget_settings": {
        "description": "2 CPU cores",
        "image_size": 32,
        "batch_size": 32,
        "expected_gap": "32 px inputs, 3 of 10 epochs",
    },
    "search": "grid",
    "asha": {"enabled": True, "grace_period": 1, "reduction_factor": 2.0},
    "data": {"name": "mnist", "sha256": "f00d", "train": 400, "val": 100, "test": 200},
    "mlflow_parent_run_id": "parent123",
}
# (model, optimizer, lr) -> val_acc per epoch; one-epoch trials were stopped by ASHA
CURVES = {
    ("resnet18", "sgd", 0.01): [0.80, 0.90, 0.95],
    ("resnet18", "sgd", 0.1): [0.30],
    ("vgg16", "sgd", 0.01): [0.60, 0.70, 0.75],
    ("vgg16", "sgd", 0.1): [0.20],
}


def toy_tables() -> dict[str, pd.DataFrame]:
    trials, epochs = [], []
    for i, ((model, opt, lr), curve) in enumerate(CURVES.items()):
        tid = f"t_{i:05d}"
        trials.append(
            {
                "trial_id": tid,
                "label": "",
                "dataset": "mnist",
                "model": model,
                "optimizer": opt,
                "lr": lr,
                "max_epochs": 3,
                "status": "TERMINATED",
                "epochs_run": len(curve),
                "stopped_early": len(curve) < 3,
                "stopped_by_rule": None,
                "best_val_acc": max(curve),
                "test_acc": max(curve) - 0.01,
            }
        )
        for e, v in enumerate(curve, 1):
            epochs.append(
                {
                    "trial_id": tid,
                    "epoch": e,
                    "train_loss": 2.0 / e,
                    "val_loss": 2.2 / e,
                    "train_acc": v,
                    "val_acc": v,
                }
            )
    table1 = pd.DataFrame(
        {
            "model": ["resnet18", "vgg16"],
            "optimizer": ["sgd", "sgd"],
            "lr": [0.01, 0.01],
            "published_test_acc_pct": [99.4, 99.1],
            "ours_test_acc_pct": [94.0, 74.0],
            "delta_pp": [-5.4, -25.1],
        }
    )
    table1.attrs["notes"] = ["Source: a toy paper, Table I."]
    return {"trials": pd.DataFrame(trials), "epochs": pd.DataFrame(epochs), "table1": table1}


def write_sweep(folder, tables=None, decisions: pd.DataFrame | None = None, prov=PROV):
    folder.mkdir(parents=True, exist_ok=True)
    for name, df in (tables or toy_tables()).items():
        write_parquet(df, folder / f"{name}.parquet", prov)
    if decisions is not None:
        write_parquet(decisions, folder / "asha_decisions.parquet", prov)
    return folder


def decisions_table() -> pd.DataFrame:
    """Rung 1: the first arrival met an empty rung; the later ones a cutoff."""
    return pd.DataFrame(
        {
            "trial_id": ["t_00000", "t_00001", "t_00002", "t_00003"],
            "rung": [1, 1, 1, 1],
            "val_acc": [0.80, 0.30, 0.60, 0.20],
            "cutoff": [np.nan, 0.55, 0.45, 0.525],
            "decision": ["continue", "stop", "continue", "stop"],
            "time_utc": [f"2026-01-01T00:00:0{i}Z" for i in range(4)],
        }
    )


def section(md: str, title: str) -> str:
    return md.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def asha_rows(md: str) -> dict[str, list[str]]:
    rows = {}
    for line in section(md, "ASHA's stopping decisions").splitlines():
        if line.startswith("| t_"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells
    return rows


@pytest.fixture
def sweep(tmp_path):
    return write_sweep(tmp_path / "results" / "toy")


def test_report_has_each_table_with_published_ours_delta(sweep):
    md_path = report.render(sweep)
    assert md_path == sweep / "report.md"  # beside the tables it reports on
    md = md_path.read_text()
    titles = re.findall(r"^## (.+)$", md, flags=re.M)
    assert titles == [
        "Summary",
        "Paper tables: published vs ours",
        "Test accuracy",
        "What matters: hyperparameter importance",
        "Learning curves of the best trials",
        "ASHA's stopping decisions",
        "Provenance",
    ]
    table = section(md, "Paper tables: published vs ours")
    assert "Source: a toy paper, Table I." in table
    assert "| resnet18 | sgd | 0.01 | 99.40 | 94.00 | -5.40 |" in table
    assert "| vgg16 | sgd | 0.01 | 99.10 | 74.00 | -25.10 |" in table
    # the compact summary recomputes Δ from published and ours
    assert "2 cells; ours below published in 2; median Δ -15.2 pp (-25.1 to -5.4)" in table
    summary = section(md, "Summary")
    assert "Best by validation: resnet18 / sgd / lr 0.01, val 95.00 %, test 94.00 %." in summary
    assert "32 px inputs, 3 of 10 epochs" in summary
    assert "| resnet18 | sgd | 0.01 | 3 | 95.00 | 94.00 |" in summary
    prov = section(md, "Provenance")
    assert "`sweeps/toy.py --budget cpu`" in prov and "`abc123`" in prov
    assert "`parent123`" in prov


def test_report_and_summary_open_with_the_verdicts(tmp_path):
    tables = toy_tables()
    pair = Pair("published_test_acc_pct", "ours_test_acc_pct", "test acc (%)", delta="delta_pp")
    contract = Comparison(ids=("model", "optimizer", "lr"), pairs=(pair,))
    t1 = tables["table1"].drop(columns="delta_pp")
    t1["ours_test_acc_pct"] = [98.9, 11.0]
    t1["not_comparable"] = [None, "no_weights: the paper fine-tuned ImageNet weights"]
    tables["table1"] = contract.apply(t1)
    folder = write_sweep(tmp_path / "results" / "toy", tables)
    md = report.render(folder).read_text().splitlines()
    headline = "Verdicts: 1 of 2 published cells reproduced; 0 below, 0 above; "
    headline += "1 not comparable here: no_weights (1)."
    assert md[:3] == ["# Report: toy, budget `cpu`", "", f"- {headline}"]
    summary = report.terminal_summary(folder).splitlines()
    assert summary[0] == headline
    assert any("resnet18" in line and "reproduced" in line for line in summary)
    assert any("vgg16" in line and "not_comparable" in line for line in summary)


def test_markdown_tables_print_what_to_markdown_prints(sweep):
    """The HTML's cells come from doc.cell: the same digits as the Markdown's."""
    df = toy_tables()["table1"]
    header, rows = doc.table_cells(df)
    assert to_markdown(pd.DataFrame(rows, columns=header, dtype=object)) == to_markdown(df)


def test_every_image_link_is_a_png_that_decodes(sweep):
    md = report.render(sweep).read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(links) >= 4  # table, heat-map, learning curves, ASHA
    for link in links:
        assert not link.startswith(("/", "http")), link  # relative: renders anywhere
        assert link.startswith("report/"), link
        path = sweep / link
        assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        pixels = mpimg.imread(path)
        assert pixels.shape[0] > 200 and pixels.shape[1] > 300
        assert pixels[..., :3].std() > 0.05  # something was drawn


def test_html_is_self_contained(sweep):
    report.render(sweep)
    page = (sweep / "report.html").read_text()
    srcs = re.findall(r'src="([^"]*)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r"href=|<link|<script|url\(", page)
    assert "<td>99.40</td><td>94.00</td><td>-5.40</td>" in page


def test_asha_section_without_decision_log(sweep):
    md = report.render(sweep).read_text()
    rows = asha_rows(md)
    assert rows["t_00001"][3] == "stopped by ASHA" and rows["t_00003"][3] == "stopped by ASHA"
    assert rows["t_00000"][3] == "finished" and rows["t_00002"][3] == "finished"
    assert rows["t_00001"][2] == "1 / 3" and rows["t_00001"][4] == "30.00"
    assert "stopped 2 of 4 trials early: 8 of the grid's 12 epochs" in md
    assert "cutoff" not in rows["t_00001"]  # no decision log: no cutoff column


def test_asha_section_with_decision_log(tmp_path):
    sweep = write_sweep(tmp_path / "toy", decisions=decisions_table())
    md = report.render(sweep).read_text()
    rows = asha_rows(md)
    # trial, config, epochs, stopped by, val at stop, best val, rung, cutoff
    assert rows["t_00001"][3:] == ["stopped by ASHA", "30.00", "30.00", "1", "55.00"]
    assert rows["t_00003"][6:] == ["1", "52.50"]
    assert rows["t_00000"][6:] == ["—", "—"]
    asha = section(md, "ASHA's stopping decisions")
    assert "| 1 | 4 | 2 | 2 | 1 | 45.00 – 55.00 |" in asha  # per-rung summary
    # vgg16 lr 0.01 went on at 60 % while resnet18 lr 0.1 was stopped at 30 %: not below
    assert "every trial that went on scored above every stopped one" in asha


def test_asha_off_says_so(tmp_path):
    tables = toy_tables()
    tables["trials"]["stopped_early"] = False
    tables["trials"]["epochs_run"] = 3
    sweep = write_sweep(tmp_path / "toy", tables, prov={**PROV, "asha": {"enabled": False}})
    md = report.render(sweep).read_text()
    assert "ASHA was off in this sweep" in md
    assert "asha_decisions.png" not in md


def test_render_twice_gives_the_same_report(sweep):
    first = report.render(sweep).read_text()
    figures = {p.name: p.read_bytes() for p in (sweep / "report").glob("*.png")}
    (sweep / "report" / "old_figure.png").write_bytes(b"stale")
    (sweep / "report" / "report.md").write_text("where pages were before")
    second = report.render(sweep).read_text()
    assert first == second
    assert {p.name: p.read_bytes() for p in (sweep / "report").glob("*.png")} == figures
    assert not (sweep / "report" / "report.md").exists()


def test_unknown_sweep_names_what_exists(sweep, capsys):
    code = report.main(["nope", "--results-dir", str(sweep.parent)])
    err = capsys.readouterr().err
    assert code == 2
    assert "no sweep 'nope'" in err and "sweeps there: toy" in err


def test_corrupt_table_is_named(sweep):
    write_text("not parquet", sweep / "table1.parquet")
    with pytest.raises(report.ReportError, match=r"table1\.parquet cannot be read as Parquet"):
        report.render(sweep)


def test_missing_epochs_table_is_named(sweep):
    (sweep / "epochs.parquet").unlink()
    with pytest.raises(report.ReportError, match=r"epochs\.parquet does not exist"):
        report.render(sweep)


def test_missing_column_is_named(tmp_path):
    tables = toy_tables()
    tables["trials"] = tables["trials"].drop(columns=["best_val_acc"])
    sweep = write_sweep(tmp_path / "toy", tables)
    with pytest.raises(report.ReportError, match="lacks column.*best_val_acc"):
        report.render(sweep)


def test_help_explains_each_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        report.main(["--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0
    for flag in ("--results-dir", "--run-id", "--tracking-uri"):
        assert flag in out


def test_logged_to_a_real_mlflow_run(sweep, mlflow_server, capsys):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server)
    exp = client.create_experiment(f"report-{sweep.parent.parent.name}")
    run = client.create_run(exp).info.run_id
    code = report.main(
        [
            "toy",
            "--results-dir",
            str(sweep.parent),
            "--run-id",
            run,
            "--tracking-uri",
            mlflow_server,
        ]
    )
    assert code == 0, capsys.readouterr().err
    # the run's artifacts mirror the folder: pages at the root, figures under report/
    listed = {f.path for f in client.list_artifacts(run)} - {"report"}
    listed |= {f.path for f in client.list_artifacts(run, "report")}
    on_disk = {"report.md", "report.html"} | {
        f"report/{p.name}" for p in (sweep / "report").iterdir()
    }
    assert len(on_disk) >= 6 and listed == on_disk


def test_a_publish_waits_for_the_report_being_rendered(sweep, tmp_path, monkeypatch):
    """The report is rendered under the publish lock from reading the tables to writing
    the pages: a run that publishes meanwhile waits, so the report never describes a set
    that has been replaced under it."""
    inside, go, order = threading.Event(), threading.Event(), []
    curves = report.curves_section

    def slow_curves(*args, **kw):  # mid-render: tables read, pages not yet written
        inside.set()
        go.wait(30)
        return curves(*args, **kw)

    monkeypatch.setattr(report, "curves_section", slow_curves)
    renderer = threading.Thread(target=lambda: (report.render(sweep), order.append("render")))
    renderer.start()
    assert inside.wait(30)
    new_run = tmp_path / "new_run"
    new_run.mkdir()
    shutil.copy(sweep / "trials.parquet", new_run / "trials.parquet")
    publisher = threading.Thread(target=lambda: (publish(new_run, sweep), order.append("publish")))
    publisher.start()
    publisher.join(1.5)
    assert order == [], "a publish went ahead while the report was being rendered"
    go.set()
    renderer.join(60)
    publisher.join(60)
    assert order == ["render", "publish"]
