"""``cnnsweep``: the command line for the common tasks, in the noun-verb style of ``ray`` and
``mlflow`` (``cnnsweep run mnist_optimizers --budget cpu``, ``cnnsweep show ...``).

Every command is a thin layer over a module a script can import too (``sweeps.runner``,
``sweeps.results``, ``sweeps.report``), so the CLI, ``python sweeps/<name>.py`` and
``ray job submit -- cnnsweep run <name>`` all do the same thing. Heavy imports (torch,
Ray, MLflow) happen inside the commands that need them, so ``--help``, ``list`` and
``show`` answer in about a second.

A sweep is any module of this package that defines ``SWEEP``: adding one is one file.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import os
import sys
from pathlib import Path

from sweeps.settings import (
    DEFAULT_RESULTS,
    DEFAULT_STORAGE,
    NOT_PAPER_TABLES,
    RESULTS_ENV,
    STORAGE_ENV,
    TRACKING_ENV,
    results_dir,
    storage_path,
)

PACKAGE_DIR = Path(__file__).parent


def available_sweeps() -> dict[str, str]:
    """{sweep name: first line of its docstring}, found without importing anything: the
    modules of this package that assign ``SWEEP`` at top level."""
    found = {}
    for path in sorted(PACKAGE_DIR.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        assigns = [
            t.id
            for node in tree.body
            if isinstance(node, ast.Assign)
            for t in node.targets
            if isinstance(t, ast.Name)
        ]
        if "SWEEP" in assigns:
            found[path.stem] = (ast.get_docstring(tree) or "").strip().splitlines()[0]
    return found


def check_sweep(name: str) -> str:
    names = available_sweeps()
    if name not in names:
        raise SystemExit(f"error: sweep {name!r} is unknown; allowed: {', '.join(names)}")
    return name


def print_rows(rows: list[dict], fmt: str) -> None:
    """A list of records as an aligned text table (like ``ray job list``) or JSON."""
    if fmt == "json":
        print(json.dumps(rows, indent=1, default=str))
        return
    if not rows:
        return
    cols = list(rows[0])
    width = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    print("  ".join(c.upper().ljust(width[c]) for c in cols).rstrip())
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(width[c]) for c in cols).rstrip())


# ------------------------------------------------------------------------------ commands


def cmd_list(args) -> int:
    """The sweeps this package defines and what each has published under the results dir."""
    rows = []
    for name, doc in available_sweeps().items():
        folder = results_dir(args.results_dir) / name
        prov = folder / "provenance.json"
        meta = json.loads(prov.read_text()) if prov.exists() else {}
        tables = sorted(p.stem for p in folder.glob("*.parquet") if p.stem not in NOT_PAPER_TABLES)
        rows.append(
            {
                "sweep": name,
                "results": meta.get("date_utc", "none"),
                "budget": meta.get("budget", ""),
                "trials": meta.get("trials", ""),
                "tables": ",".join(tables),
                "description": doc,
            }
        )
    print_rows(rows, args.format)
    return 0


def _sweep_main(name: str, argv: list[str], verb: str = "run") -> int:
    module = importlib.import_module(f"sweeps.{check_sweep(name)}")
    from sweeps.runner import main

    return main(module.SWEEP, argv, doc=module.__doc__, prog=f"cnnsweep {verb} {name}")


def cmd_run(args) -> int:
    """Run a sweep: every flag after the sweep's name is the sweep's own."""
    return _sweep_main(args.sweep, args.flags)


def cmd_resume(args) -> int:
    """Continue a sweep whose driver died: same flags as the original run (plus --name)."""
    if "--resume" in args.flags:
        args.flags.remove("--resume")
    return _sweep_main(args.sweep, ["--resume", *args.flags], "resume")


def cmd_runs(args) -> int:
    """Runs under the Tune storage path, newest first, with what ``resume`` needs."""
    from sweeps import run_record  # imports torch (through ConfigError): not at --help

    store = storage_path(args.storage_path)
    rows = []
    for state, meta in run_record.records(store):
        if args.sweep and meta.get("sweep") != args.sweep:
            continue
        exp = store / state.name
        rows.append(
            {
                "name": state.name,
                "sweep": meta.get("sweep", "?"),
                "status": run_record.status(store, state, meta),
                "started_utc": meta.get("started_utc", ""),
                "trials": sum(1 for p in exp.glob("train_trial_*") if p.is_dir()),
                "mlflow_parent_run": meta.get("mlflow", {}).get("parent_run_id", ""),
                "_mtime": (state / run_record.RECORD).stat().st_mtime,
            }
        )
    rows.sort(key=lambda r: r.pop("_mtime"), reverse=True)
    if not rows:
        which = f"{args.sweep} " if args.sweep else ""
        print(f"no {which}runs under {store} (set --storage-path or ${STORAGE_ENV})")
        return 0
    print_rows(rows, args.format)
    return 0


def cmd_show(args) -> int:
    """Print one result table (default: the sweep's first paper table)."""
    import pandas as pd

    from sweeps.results import load_results, to_markdown

    check_sweep(args.sweep)
    try:
        tables = load_results(args.sweep, results_dir(args.results_dir), run=args.run)
    except (FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    paper = [t for t in tables if t not in NOT_PAPER_TABLES]
    name = args.table or (paper[0] if paper else "trials")
    if name not in tables:
        print(
            f"error: table {name!r} is not in {args.sweep}; allowed: {', '.join(tables)}",
            file=sys.stderr,
        )
        return 2
    df = tables[name]
    if args.columns:
        missing = [c for c in args.columns if c not in df.columns]
        if missing:
            print(
                f"error: columns {missing} are not in {name}; allowed: {', '.join(df.columns)}",
                file=sys.stderr,
            )
            return 2
        df = df[args.columns]
    if args.format == "csv":
        df.to_csv(sys.stdout, index=False)
    elif args.format == "json":
        print(df.to_json(orient="records", indent=1))
    else:
        with pd.option_context("display.width", 200):
            print(to_markdown(df))
    return 0


def cmd_report(args) -> int:
    """Render results/<sweep>/report.md, report.html and report/ (figures) from the Parquet
    tables; with a tracking URI, log it to the sweep's parent MLflow run as well."""
    from sweeps import report

    sweep = check_sweep(args.sweep)
    folder = results_dir(args.results_dir)
    argv = [sweep, "--results-dir", str(folder)]
    uri = args.tracking_uri or os.environ.get(TRACKING_ENV)
    run_id = args.run_id
    if uri and not run_id:  # the parent run the sweep's provenance names
        prov = folder / sweep / "provenance.json"
        run_id = json.loads(prov.read_text()).get("mlflow_parent_run_id") if prov.exists() else None
        if not run_id:
            print(f"error: {prov} names no MLflow parent run; pass --run-id", file=sys.stderr)
            return 2
    if run_id:
        argv += ["--run-id", run_id] + (["--tracking-uri", uri] if uri else [])
    return report.main(argv)


def cmd_weights(args) -> int:
    """Per model: its ImageNet weights file and where it would come from (the weights
    folder, the library's cache, none), checked; ``fetch MODEL...`` downloads files into
    the weights folder through the libraries' normal download (needs a network)."""
    from trainables.models import MODELS, get_spec
    from trainables.models import weights as w

    folder = args.weights_dir or os.environ.get(w.WEIGHTS_DIR_ENV)
    if args.models[:1] == ["fetch"]:
        return fetch_weights(args.models[1:], folder)
    if folder and not Path(folder).is_dir():
        print(f"error: weights folder {folder} does not exist", file=sys.stderr)
        return 2
    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        print(f"error: {unknown} unknown; allowed: {', '.join(MODELS.names())}", file=sys.stderr)
        return 2
    rows = []
    for name in MODELS.names():
        label = get_spec(name).imagenet
        if args.models and name not in args.models:
            continue
        found = w.availability(label, Path(folder) if folder else None) if label else {}
        rows.append(
            {"model": name, "imagenet": label or "none published"}
            | {k: found.get(k, "") for k in ("file", "source", "sha256", "check")}
        )
    print_rows(rows, args.format)
    return 0


def fetch_weights(models: list[str], folder: str | None) -> int:
    from trainables.models import MODELS, get_spec
    from trainables.models import weights as w

    if not folder:
        print(
            f"error: no weights folder; pass --weights-dir or set ${w.WEIGHTS_DIR_ENV}",
            file=sys.stderr,
        )
        return 2
    bad = [m for m in models if m not in MODELS or not get_spec(m).imagenet]
    if bad or not models:
        with_weights = [m for m in MODELS.names() if get_spec(m).imagenet]
        print(
            f"error: fetch {' '.join(bad) or '(no model)'}: allowed: models with ImageNet "
            f"weights: {', '.join(with_weights)}",
            file=sys.stderr,
        )
        return 2
    for label in dict.fromkeys(get_spec(m).imagenet for m in models):
        path = w.fetch(label, Path(folder))
        print(f"{label}: {path} sha256 {w.file_sha256(path)}")
    return 0


# ------------------------------------------------------------------------------- parser


EXAMPLES = """\
examples:
  cnnsweep list
  cnnsweep run mnist_optimizers --budget cpu --data-root ../shared/data
  cnnsweep run mnist_optimizers --help        # the sweep's own flags
  ray job submit --working-dir . -- cnnsweep run mnist_optimizers
  cnnsweep runs mnist_optimizers
  cnnsweep resume mnist_optimizers --budget cpu   # the original flags
  cnnsweep show mnist_optimizers table1 --format csv
  cnnsweep report mnist_optimizers
  cnnsweep weights --weights-dir ~/weights    # per model: which file, from where, checked
  cnnsweep weights fetch mobilenet_v2 resnet50 --weights-dir ~/weights   # needs a network
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cnnsweep",
        description="Run CNN hyperparameter sweeps on Ray Tune (logged to MLflow) and read "
        "their Parquet result tables and reports.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXAMPLES,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sweep_help = "one of: " + ", ".join(available_sweeps())
    add_list_parser(sub)
    add_run_parsers(sub, sweep_help)
    add_runs_parser(sub)
    add_show_parser(sub, sweep_help)
    add_report_parser(sub, sweep_help)
    add_weights_parser(sub)
    return p


def _add(sub, name: str, func, help_: str) -> argparse.ArgumentParser:
    sp = sub.add_parser(name, help=help_, description=func.__doc__)
    sp.set_defaults(func=func)
    return sp


def _results_flag(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--results-dir",
        help=f"where result tables live (default ${RESULTS_ENV}, else ./{DEFAULT_RESULTS})",
    )


def _format_flag(sp: argparse.ArgumentParser, choices=("table", "json")) -> None:
    sp.add_argument("--format", choices=choices, default=choices[0], help="output format")


def add_list_parser(sub) -> None:
    sp = _add(sub, "list", cmd_list, "list the sweeps and what each has published")
    _results_flag(sp)
    _format_flag(sp)


def add_run_parsers(sub, sweep_help: str) -> None:
    for name, func, what in (
        ("run", cmd_run, "run a sweep (flags after its name are the sweep's: see --help)"),
        ("resume", cmd_resume, "continue a sweep whose driver died (the original flags)"),
    ):
        sp = _add(sub, name, func, what)
        sp.add_argument("sweep", metavar="SWEEP", help=sweep_help)
        sp.add_argument(
            "flags",
            nargs=argparse.REMAINDER,
            metavar="FLAGS",
            help="the sweep's flags (--budget, --models, --lrs, --tracking-uri, ...); "
            f"`cnnsweep {name} SWEEP --help` lists them",
        )


def add_runs_parser(sub) -> None:
    sp = _add(sub, "runs", cmd_runs, "list runs under the Tune storage path (for resume)")
    sp.add_argument("sweep", nargs="?", metavar="SWEEP", help="only this sweep's runs")
    sp.add_argument(
        "--storage-path",
        help=f"Tune storage (default ${STORAGE_ENV}, else {DEFAULT_STORAGE})",
    )
    _format_flag(sp)


def add_show_parser(sub, sweep_help: str) -> None:
    sp = _add(sub, "show", cmd_show, "print a result table")
    sp.add_argument("sweep", metavar="SWEEP", help=sweep_help)
    sp.add_argument(
        "table",
        nargs="?",
        help="table name (file stem: table1, trials, epochs, asha_decisions, ...); "
        "default the first paper table",
    )
    _results_flag(sp)
    sp.add_argument(
        "--run", help="read this run's own folder (runs/<name>/), not the published set"
    )
    sp.add_argument(
        "--columns", type=lambda s: [c for c in s.split(",") if c], help="comma-separated subset"
    )
    _format_flag(sp, ("markdown", "csv", "json"))


def add_report_parser(sub, sweep_help: str) -> None:
    sp = _add(sub, "report", cmd_report, "render report.md + report.html from the tables")
    sp.add_argument("sweep", metavar="SWEEP", help=sweep_help)
    _results_flag(sp)
    sp.add_argument(
        "--tracking-uri",
        help=f"also log the report to the sweep's parent MLflow run on this server "
        f"(default: ${TRACKING_ENV} if set, else not logged)",
    )
    sp.add_argument(
        "--run-id", help="the MLflow run to log to (default: the parent run in provenance.json)"
    )


def add_weights_parser(sub) -> None:
    sp = _add(sub, "weights", cmd_weights, "list each model's ImageNet weights (or fetch them)")
    sp.add_argument(
        "models",
        nargs="*",
        metavar="[fetch] MODEL",
        help="only these models; after `fetch`: download their files into the weights folder",
    )
    sp.add_argument(
        "--weights-dir",
        help="the folder of weight files (default $CNNSWEEP_WEIGHTS_DIR)",
    )
    _format_flag(sp)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
