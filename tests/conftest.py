"""Fixtures that start real services (an MLflow server on a free loopback port, a local
Ray with 2 CPUs) and write small real datasets in the project's Parquet layout."""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from ports import free_port  # noqa: F401 (tests import it from here)

from sweeps.cluster import ensure_token, stop, terminate_all  # noqa: F401 (tests import these)
from sweeps.settings import apply_environment
from trainables.schema import SUMMARY_METRICS

# what a sweep's main sets before Ray is imported; the tests import Ray themselves first
apply_environment([])

REPO = Path(__file__).resolve().parents[1]

# The tests' Ray clusters use a token of their own, never the user's ~/.ray/auth_token
# (which a new machine does not have: tests/test_fresh_home.py covers that path).
_TOKEN_DIR = Path(tempfile.mkdtemp(prefix="cnnsweep-test-token-"))
os.environ["RAY_AUTH_TOKEN_PATH"] = str(_TOKEN_DIR / "auth_token")
ensure_token()
atexit.register(shutil.rmtree, _TOKEN_DIR, ignore_errors=True)


def start_mlflow(root: Path, port: int) -> subprocess.Popen:
    """A real ``mlflow server`` on SQLite in ``root``, bound to 127.0.0.1:``port``, in its
    own process group (so a test can kill it with all its workers, and restart it)."""
    root.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    log = open(root / "log", "a")  # noqa: SIM115 (lives as long as the server)
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
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{uri}/health", timeout=2)
            return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError((root / "log").read_text()[-2000:]) from None
            time.sleep(0.5)
    stop_mlflow(proc)
    raise RuntimeError("mlflow server did not start")


def stop_mlflow(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(15)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real ``mlflow server`` on SQLite, bound to 127.0.0.1 on a free port."""
    port = free_port()
    proc = start_mlflow(tmp_path_factory.mktemp("mlflow"), port)
    yield f"http://127.0.0.1:{port}"
    stop_mlflow(proc)


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
    from trainables.data import make_synthetic

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


# --------------------------------------------------------- Ray nodes started by `ray start`

RAY_BIN = Path(sys.executable).with_name("ray")
# Every port a node opens, each free, so a cluster the user left running (make up)
# cannot collide with one a test starts.
NODE_PORTS = ("object-manager", "node-manager", "metrics-export", "runtime-env-agent")
HEAD_PORTS = ("dashboard-agent-listen", "dashboard-agent-grpc", "ray-client-server")


def ray_env() -> dict:
    """Token auth, as ``make up`` runs Ray (``ray start`` turns it on by default)."""
    return {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "PATH": f"{RAY_BIN.parent}:{os.environ['PATH']}",
    }


def start_ray_node(num_cpus: int, dashboard_port: int | None = None) -> dict:
    """``ray start --head`` on loopback (token auth, every port free); returns its ports."""
    ports = {f"{n}-port": free_port() for n in NODE_PORTS + HEAD_PORTS}
    ports["port"] = free_port()
    cmd = [str(RAY_BIN), "start", "--head", "--node-ip-address=127.0.0.1"]
    cmd += [f"--num-cpus={num_cpus}", "--disable-usage-stats"]
    cmd += [f"--{k}={v}" for k, v in ports.items()]
    if dashboard_port:
        cmd += [
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard_port}",
        ]
    else:
        cmd += ["--include-dashboard=false"]
    out = subprocess.run(cmd, env=ray_env(), capture_output=True, text=True, timeout=180)
    if out.returncode:
        raise RuntimeError(out.stdout[-2000:] + out.stderr[-2000:])
    return ports


def kill_tree(proc, sig=9) -> None:
    """Signal a process and all its descendants (a Ray node: raylet, agents, workers)."""
    import psutil

    procs = [proc, *proc.children(recursive=True)]
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.send_signal(sig)
    psutil.wait_procs(procs, timeout=15)


def stop_ray_cluster(gcs_port: int) -> None:
    """Kill only this cluster's processes (``ray stop`` would also stop a user's own)."""
    stop(gcs_port)


@contextlib.contextmanager
def two_nodes(env: dict, cpus: tuple[int, int] = (1, 1)):
    """tests/ray_two_nodes.py running; yields what it prints (address, node ids, temp dir)."""
    nodes = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "ray_two_nodes.py"), *map(str, cpus)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        line = nodes.stdout.readline()
        assert line, "tests/ray_two_nodes.py exited before the cluster was up"
        yield json.loads(line)
    finally:
        nodes.stdin.close()  # the script shuts its cluster down and removes its temp dir
        try:
            nodes.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(nodes.pid, signal.SIGKILL)
            nodes.wait(15)


def assert_history_matches(client, run_id: str, epochs) -> None:
    """The child run's per-epoch metric history equals its rows of ``epochs.parquet``, and
    the summary metrics end with one more point, one step after the last epoch: the selected
    epoch's value, which is then the run's latest (what the runs table shows)."""
    last = int(epochs["epoch"].max())
    run = client.get_run(run_id)
    selected = epochs[epochs["epoch"] == int(run.data.metrics["selected_epoch"])].iloc[0]
    for metric in ("val_acc", "train_loss", "images_per_s"):
        hist = sorted(client.get_metric_history(run_id, metric), key=lambda m: m.step)
        per_epoch = [m for m in hist if m.step <= last]
        assert [m.step for m in per_epoch] == epochs["epoch"].tolist()
        assert [m.value for m in per_epoch] == pytest.approx(epochs[metric].tolist(), rel=1e-12)
        summary = [(m.step, m.value) for m in hist if m.step > last]
        if metric in SUMMARY_METRICS:
            assert summary == [(last + 1, pytest.approx(float(selected[metric]), rel=1e-12))]
            assert run.data.metrics[metric] == pytest.approx(float(selected[metric]), rel=1e-12)
            assert run.data.metrics[f"last_{metric}"] == pytest.approx(
                float(epochs[metric].iloc[-1]), rel=1e-12
            )
        else:
            assert summary == []
