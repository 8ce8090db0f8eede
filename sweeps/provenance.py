"""Provenance: what a reader needs to trust and rerun a result table.

Command, budget, hardware, date, git commit, package versions and data digest, with
folders named so they hold on any machine (:func:`portable`). It goes into each Parquet
file's schema metadata under ``cnnsweep.provenance`` (:func:`sweeps.results.write_parquet`)
and into ``provenance.json`` beside the tables.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pyarrow.parquet as pq

from sweeps.results import PROVENANCE_KEY

GIT_COMMIT_ENV = "CNNSWEEP_GIT_COMMIT"
CHECKOUT_ENV = "CNNSWEEP_CHECKOUT"
PACKAGES = ("torch", "torchvision", "ray", "mlflow", "optuna", "pyarrow", "pandas", "timm", "numpy")


def git_commit() -> str:
    """HEAD of the source tree, or $CNNSWEEP_GIT_COMMIT (a Ray job's working dir has no .git)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10
        )
        if out.returncode == 0:
            commit = out.stdout.strip()
            dirty = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=here,
                capture_output=True,
                text=True,
                timeout=10,
            )
            return commit + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return os.environ.get(GIT_COMMIT_ENV, "unknown")


def hardware() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "gpus": gpus,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def redact(text: str) -> str:
    """Remove credentials from URLs in a command line (``scheme://user:pw@host``)."""
    return re.sub(r"([a-zA-Z][\w+.-]*://)[^/@\s]+@", r"\1***@", text)


def checkout_root() -> Path | None:
    """The checkout the results belong to: ``$CNNSWEEP_CHECKOUT`` (``make run`` sets it:
    a Ray job runs from a temporary copy), else the git work tree of this source."""
    if os.environ.get(CHECKOUT_ENV):
        return Path(os.environ[CHECKOUT_ENV])
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(out.stdout.strip()) if out.returncode == 0 else None


def portable(value, roots: dict[str, str | Path | None]):
    """``value`` (a provenance dict) with absolute folders replaced by names that hold on
    any machine: each root's path by its label (``$CNNSWEEP_DATA_ROOT/mnist``), paths in
    the checkout by their path relative to it (``results``). A root is matched as given
    (made absolute) and with its links resolved, since a command line has the one and
    the data's source the other; longest path first."""
    text = json.dumps(value, default=str)
    pairs = {
        (label, str(form).rstrip("/"))
        for label, root in roots.items()
        if root
        for form in (Path(root).expanduser().absolute(), Path(root).expanduser().resolve())
    }
    for label, root in sorted(pairs, key=lambda kv: -len(kv[1])):
        if not root:
            continue
        rel = "" if label == "." else f"{label}/"
        text = re.sub(re.escape(root) + r"/", lambda _, r=rel: r, text)
        text = re.sub(re.escape(root) + r'(?=["\s:])', lambda _, lb=label: lb, text)
    return json.loads(text)


def provenance(data_root: str | Path | None = None, **extra) -> dict:
    """What a reader needs to trust and rerun a result table; folders named as
    :func:`portable` names them, never as this machine's absolute paths."""
    prov = {
        "command": redact(" ".join(sys.argv)),
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git_commit": git_commit(),
        "hardware": hardware(),
        "versions": versions(),
        **extra,
    }
    return portable(prov, {"$CNNSWEEP_DATA_ROOT": data_root, ".": checkout_root()})


def load_provenance(path: str | Path) -> dict:
    """The provenance stored in a result table's Parquet metadata."""
    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta[PROVENANCE_KEY]) if PROVENANCE_KEY in meta else {}


def provenance_items(prov: dict) -> list[str]:
    """The record as the lines a reader scans (command, budget, data, hardware, date, commit,
    versions); a KeyError names a field an older or hand-made record lacks."""
    v, hw = prov["versions"], prov["hardware"]
    return [
        f"command: `{prov['command']}`",
        f"budget: `{prov['budget']}`; search: {prov['search']}; ASHA: {prov['asha']}",
        f"data: {prov['data']}",
        f"hardware: {hw['cpu']} ({hw['cpu_count']} CPUs), GPUs: {hw['gpus'] or 'none'}",
        f"date (UTC): {prov['date_utc']}; wall: {prov.get('wall_s')} s",
        f"git commit: `{prov['git_commit']}`",
        "versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
    ]


def provenance_md(prov: dict) -> str:
    """The record as a Markdown section, for the tables' Markdown files."""
    return "## Provenance\n\n" + "".join(f"- {item}\n" for item in provenance_items(prov))
