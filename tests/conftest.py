"""Fixtures that start real services (an MLflow server on a free loopback port, a local
Ray with 2 CPUs) and write small real datasets in the project's Parquet layout."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real ``mlflow server`` on SQLite, bound to 127.0.0.1 on a free port."""
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    log = open(root / "log", "w")  # noqa: SIM115 (lives as long as the server)
    proc = subprocess.Popen(
        [
            str(mlflow_bin),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{root}/mlflow.db",
            "--artifacts-destination",
            str(root / "artifacts"),
        ],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    uri = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{uri}/health", timeout=2)
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError((root / "log").read_text()[-2000:]) from None
            time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError("mlflow server did not start")
    yield uri
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def ray_local():
    import ray

    # address="local": a private cluster even when `make up` left one running
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
    )
    yield ray
    ray.shutdown()


def png_bytes(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img.squeeze(0) if img.shape[0] == 1 else img.transpose(1, 2, 0)).save(
        buf, format="PNG"
    )
    return buf.getvalue()


def write_parquet_dataset(folder: Path, splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """Write images/labels in the shared-data layout: one Parquet per split + MANIFEST.json."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for split, (images, labels) in splits.items():
        table = pa.table(
            {
                "image": [png_bytes(im) for im in images],
                "label": labels.astype(np.int64),
                "split": [split] * len(labels),
            }
        )
        path = folder / f"{split}.parquet"
        pq.write_table(table, path)
        files.append(
            {
                "file": path.name,
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                "rows": len(labels),
            }
        )
    (folder / "MANIFEST.json").write_text(json.dumps({"name": folder.name, "files": files}))
    return folder


@pytest.fixture(scope="session")
def tiny_data_root(tmp_path_factory):
    """10-class MNIST- and CIFAR-shaped datasets (400 train, 100 test each) as real
    PNG-in-Parquet files."""
    from trainables.datasets import make_synthetic

    root = tmp_path_factory.mktemp("data")
    train, test = (
        make_synthetic(n, num_classes=10, size=28, seed=s) for n, s in ((400, 1), (100, 2))
    )
    write_parquet_dataset(
        root / "mnist", {"train": (train.images, train.labels), "test": (test.images, test.labels)}
    )
    train, test = (
        make_synthetic(n, num_classes=10, size=32, channels=3, seed=s)
        for n, s in ((400, 3), (100, 4))
    )
    write_parquet_dataset(
        root / "cifar10",
        {"train": (train.images, train.labels), "test": (test.images, test.labels)},
    )
    return root


@pytest.fixture(scope="session")
def shared_data_root():
    """The real datasets (``$CNNSWEEP_DATA_ROOT`` or ../shared/data); CI must have them."""
    env = os.environ.get("CNNSWEEP_DATA_ROOT")
    root = Path(env) if env else REPO.parent / "shared" / "data"
    if not (root / "mnist" / "MANIFEST.json").exists():
        if os.environ.get("CI"):
            pytest.fail(f"CI has no real data at {root}; set CNNSWEEP_DATA_ROOT")
        pytest.skip(f"no real data at {root}")
    return root


@pytest.fixture
def copy_tree():
    return shutil.copytree
