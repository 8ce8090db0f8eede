"""Bad input fails clearly before any trial starts.

Each case goes through ``sweeps.runner.main`` in-process, as a user's command would, and
must: exit with code 2, print exactly one ``error:`` line that names the bad value and
says what is allowed or what to do, and leave nothing behind (no result tables, no Tune
storage, no MLflow run). ``run_plan`` (Ray, then trials) is replaced by a tripwire, so a
check that lets bad input through fails here instead of starting a sweep. Two property
tests fuzz the config and flag validation: they may only accept valid input or raise
ConfigError (argparse: SystemExit).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import free_port, write_parquet_dataset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlflow.tracking import MlflowClient

from sweeps import chromosome_baselines, cifar_cnns, mnist_optimizers
from sweeps.flags import build_parser
from sweeps.mnist_optimizers import SWEEP
from sweeps.plan import make_plan
from sweeps.runner import main
from trainables.augment import AUGMENTATIONS
from trainables.config import (
    LR_SCHEDULES,
    OPTIMIZERS,
    SELECT_BY,
    TRAIN_RULES,
    ConfigError,
    TrialConfig,
)
from trainables.data import make_synthetic
from trainables.models import list_models

SMOKE_BATCH = mnist_optimizers.BUDGETS["smoke"].batch_size  # 32


# --------------------------------------------------------------------- inputs on disk


def copy_mnist(tmp: Path, tiny: Path) -> Path:
    """A private copy of the tiny MNIST data root, safe to damage."""
    shutil.copytree(tiny / "mnist", tmp / "data" / "mnist")
    return tmp / "data"


def reseal(folder: Path) -> None:
    """Make MANIFEST.json's sha256s match the files again, so the check after it is tested."""
    manifest = json.loads((folder / "MANIFEST.json").read_text())
    for entry in manifest["files"]:
        entry["sha256"] = hashlib.sha256((folder / entry["file"]).read_bytes()).hexdigest()
    (folder / "MANIFEST.json").write_text(json.dumps(manifest))


def edit_train(edit: Callable[[dict], object]) -> Callable[[Path, Path], Path]:
    """Rewrite train.parquet's columns (a dict of lists) with ``edit``; manifest resealed."""

    def setup(tmp: Path, tiny: Path) -> Path:
        import pyarrow as pa
        import pyarrow.parquet as pq

        root = copy_mnist(tmp, tiny)
        path = root / "mnist" / "train.parquet"
        columns = pq.read_table(path).to_pydict()
        edit(columns)
        pq.write_table(pa.table(columns), path)
        reseal(root / "mnist")
        return root

    return setup


def edit_manifest(edit: Callable[[dict], object]) -> Callable[[Path, Path], Path]:
    def setup(tmp: Path, tiny: Path) -> Path:
        root = copy_mnist(tmp, tiny)
        path = root / "mnist" / "MANIFEST.json"
        manifest = json.loads(path.read_text())
        edit(manifest)
        path.write_text(json.dumps(manifest))
        return root

    return setup


def manifest_text(text: str) -> Callable[[Path, Path], Path]:
    def setup(tmp: Path, tiny: Path) -> Path:
        root = copy_mnist(tmp, tiny)
        (root / "mnist" / "MANIFEST.json").write_text(text)
        return root

    return setup


def truncated(tmp: Path, tiny: Path) -> Path:
    """train.parquet cut in half, manifest resealed: the Parquet reader's error is tested."""
    root = copy_mnist(tmp, tiny)
    path = root / "mnist" / "train.parquet"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    reseal(root / "mnist")
    return root


def tiny_mnist(tmp: Path, tiny: Path) -> Path:
    """20 training images: 18 after validation is carved off, fewer than a smoke batch."""
    train, test = make_synthetic(20, num_classes=10), make_synthetic(20, num_classes=10, seed=2)
    write_parquet_dataset(
        tmp / "data" / "mnist",
        {"train": (train.images, train.labels), "test": (test.images, test.labels)},
    )
    return tmp / "data"


def image_folder(classes=("a", "b"), empty: bool = False, extra=None, csv: str | None = None):
    """A ``--data`` tree of PNG class folders; the last class optionally empty or given an
    ``extra`` (file name, bytes); ``csv``: the text of ``{tmp}/g.csv``."""

    def setup(tmp: Path, tiny: Path) -> Path:
        from PIL import Image

        root = tmp / "folder"
        images = make_synthetic(4, size=28).images
        for k, name in enumerate(classes):
            (root / name).mkdir(parents=True)
            if empty and k == len(classes) - 1:
                continue
            for i, img in enumerate(images):
                Image.fromarray(img[0]).save(root / name / f"{i}.png")
        if extra:
            (root / classes[-1] / extra[0]).write_bytes(extra[1])
        if csv is not None:
            (tmp / "g.csv").write_text(csv)
        return root

    return setup


def wrong_weights(tmp: Path, tiny: Path) -> Path:
    """A weights folder whose ResNet-18 file is not the file its name's hash says."""
    (tmp / "w").mkdir()
    (tmp / "w" / "resnet18-f37072fd.pth").write_bytes(b"not the real file")
    return tmp / "w"


def blocker(tmp: Path, tiny: Path) -> Path:
    """A plain file where the results dir's parent should be (works as root, unlike chmod)."""
    (tmp / "blocker").write_text("")
    return tmp / "blocker"


# -------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Bad:
    id: str
    args: tuple[str, ...]  # flags after the good ones; {data} {tmp} {port} {html} {files}
    bad: str  # the bad value, as the error line must name it
    allowed: str  # what is allowed or what to do, as the error line must say it
    setup: Callable[[Path, Path], Path] | None = None  # (tmp, tiny root) -> {data}
    usage: bool = False  # an argparse usage error: SystemExit(2)
    env: tuple[tuple[str, str], ...] = ()


DATA = ("--data-root", "{data}")
WA = "allowed: imagenet, scratch, or the path of a weights file"
CASES = [
    # flags
    Bad("budget", ("--budget", "nope"), "'nope'", "allowed: paper, cpu, smoke"),
    Bad("model", ("--models", "resnet19"), "resnet19", "allowed: resnet18"),
    Bad("models-empty", ("--models", ","), "empty not allowed", "allowed: resnet18"),
    Bad("optimizer", ("--optimizers", "rmsprop"), "rmsprop", "allowed: sgd,adam"),
    Bad("dataset", ("--dataset", "imagenet"), "'imagenet'", "allowed: chromosome_gband"),
    Bad("lr-zero", ("--lrs", "0"), "'lr' = 0.0", "allowed: a number > 0 and <= 1"),
    Bad("lr-negative", ("--lrs", "0.01,-0.1"), "'lr' = -0.1", "allowed: a number > 0"),
    Bad("lr-above-1", ("--lrs", "2"), "'lr' = 2.0", "allowed: a number > 0 and <= 1"),
    Bad("lr-nan", ("--lrs", "nan"), "'lr' = nan", "allowed: a number > 0 and <= 1"),
    Bad("lr-inf", ("--lrs", "inf"), "'lr' = inf", "allowed: a number > 0 and <= 1"),
    Bad("lr-text", ("--lrs", "x"), "'x'", "comma-separated list of float", usage=True),
    Bad("lrs-empty", ("--lrs", ","), "--lrs is empty", "allowed: comma-separated learning"),
    Bad("dataset-empty", ("--dataset", ""), "--dataset ''", "allowed: chromosome_gband"),
    Bad("epochs-zero", ("--epochs", "0"), "'epochs' = 0", "allowed: an integer >= 1"),
    Bad("epochs-float", ("--epochs", "1.5"), "'1.5'", "invalid int value", usage=True),
    Bad("momentum-neg", ("--momentum", "-1"), "'momentum' = -1.0", "allowed: 0 <= momentum < 1"),
    Bad("momentum-one", ("--momentum", "1"), "'momentum' = 1.0", "allowed: 0 <= momentum < 1"),
    Bad("seed-negative", ("--seed", "-1"), "'seed' = -1", "allowed: an integer 0.."),
    Bad("grace-period", ("--grace-period", "5"), "--grace-period 5", "allowed 1..2"),
    Bad("reduction-factor", ("--reduction-factor", "1"), "--reduction-factor 1.0", "allowed"),
    Bad("reduction-nan", ("--reduction-factor", "nan"), "--reduction-factor nan", "allowed"),
    Bad("asha-quorum", ("--asha-quorum", "-1"), "--asha-quorum -1", "allowed: an integer >= 0"),
    Bad("cpus-zero", ("--cpus-per-trial", "0"), "--cpus-per-trial 0", "allowed: an integer >= 1"),
    Bad("gpus-negative", ("--gpus-per-trial", "-1"), "--gpus-per-trial -1", "allowed: a number"),
    Bad(
        "num-samples",
        ("--search", "optuna", "--num-samples", "0"),
        "--num-samples 0",
        "allowed >= 1",
    ),
    Bad("max-failures", ("--max-failures", "-1"), "--max-failures -1", "allowed: an integer >= 0"),
    Bad("max-concurrent", ("--max-concurrent", "0"), "--max-concurrent 0", "allowed: an integer"),
    Bad("search", ("--search", "bogus"), "'bogus'", "choose from", usage=True),
    # issue 13: each of these once ran, hung, crashed or wrote outside the storage path
    Bad("models-twice", ("--models", "resnet18,resnet18"), "resnet18 given more", "each value"),
    Bad("optimizers-twice", ("--optimizers", "sgd,adam,sgd"), "sgd given more", "each value"),
    Bad("lrs-twice", ("--lrs", "0.01,1e-2"), "0.01 given more than once", "each value once"),
    Bad("cpus-beyond-machine", ("--cpus-per-trial", "500"), "--cpus-per-trial 500", "allowed: 1.."),
    Bad(
        "tracking-ftp",
        ("--tracking-uri", "ftp://127.0.0.1/x"),
        "ftp://127.0.0.1/x: scheme 'ftp://' is not supported",
        "allowed: http(s)://",
    ),
    # issue 16: the Optuna study's database
    Bad(
        "optuna-storage-scheme",
        ("--optuna-storage", "ftp://127.0.0.1/x"),
        "--optuna-storage ftp://127.0.0.1/x: cannot open it",
        "allowed: a SQLAlchemy URL",
    ),
    Bad(
        "optuna-storage-memory",
        ("--optuna-storage", "sqlite:///:memory:"),
        "an in-memory SQLite study dies with the driver",
        "allowed: a SQLAlchemy URL",
    ),
    Bad(
        "optuna-storage-unwritable",
        ("--optuna-storage", "sqlite:////dev/null/optuna.db"),
        "cannot create /dev/null/optuna.db: /dev/null is not a writable folder",
        "sqlite:////abs/path/optuna.db",
    ),
    Bad("name-traversal", ("--name", "../../../tmp/escape"), "'../../../tmp/escape'", "plain name"),
    Bad("name-absolute", ("--name", "/tmp/escape"), "'/tmp/escape'", "no '..' or path"),
    Bad("name-dots", ("--name", ".."), "--name '..' is not a plain name", "allowed: 1-128"),
    Bad("split", ("--split", "bogus"), "'bogus'", "choose from", usage=True),
    # issue 15: weights
    Bad("weights-unknown", ("--weights", "imagenett"), "--weights imagenett: no such file", WA),
    Bad("weights-missing", ("--weights", "{tmp}/w.pth"), "--weights {tmp}/w.pth: no such", WA),
    Bad("weights-folder", ("--weights", "{tmp}"), "--weights {tmp}: is a folder", "--weights-dir"),
    Bad(
        "weights-dir-missing",
        ("--weights-dir", "{tmp}/nowhere"),
        "--weights-dir {tmp}/nowhere: no such folder",
        "allowed: a folder of checkpoint files",
    ),
    Bad(
        "weights-dir-env-missing",
        (),
        "$CNNSWEEP_WEIGHTS_DIR {tmp}/nowhere: no such folder",
        "allowed: a folder of checkpoint files",
        env=(("CNNSWEEP_WEIGHTS_DIR", "{tmp}/nowhere"),),
    ),
    Bad(
        "weights-wrong-hash",
        ("--weights", "imagenet", "--weights-dir", "{data}"),
        "{data}/resnet18-f37072fd.pth is not the file its name says: expected a sha256 "
        "starting f37072fd",
        "allowed: the library's own file",
        setup=wrong_weights,
    ),
    Bad(
        "weights-and-no-pretrained",
        ("--no-pretrained", "--weights", "imagenet"),
        "--no-pretrained and --weights imagenet",
        "allowed: --weights scratch",
    ),
    # services and folders
    Bad(
        "results-unwritable",
        ("--results-dir", "{data}/sub"),
        "{data}/sub/mnist_optimizers is not writable",
        "pass --results-dir",
        setup=blocker,
    ),
    Bad(
        "tracking-unreachable",
        ("--tracking-uri", "http://127.0.0.1:{port}"),
        "http://127.0.0.1:{port} is not reachable",
        "start one (make up) or pass --tracking-uri",
    ),
    Bad(
        "tracking-html-page",
        ("--tracking-uri", "{html}"),
        "{html} is not reachable or is not an MLflow server",
        "pass --tracking-uri",
    ),
    Bad(
        "tracking-file-server",
        ("--tracking-uri", "{files}"),
        "{files} is not reachable or is not an MLflow server (HTTP Error 404",
        "pass --tracking-uri",
    ),
    Bad(
        "ray-unreachable",
        ("--ray-address", "127.0.0.1:{port}"),
        "--ray-address '127.0.0.1:{port}'",
        "allowed: the host:port of a running Ray head",
    ),
    Bad(
        "ray-client-unreachable",
        ("--ray-address", "ray://127.0.0.1:{port}"),
        "--ray-address 'ray://127.0.0.1:{port}'",
        "allowed: the host:port of a running Ray head",
    ),
    Bad(
        "ray-env-unreachable",
        (),
        "$RAY_ADDRESS '127.0.0.1:{port}'",
        "allowed: the host:port of a running Ray head",
        env=(("RAY_ADDRESS", "127.0.0.1:{port}"),),
    ),
    Bad("ray-no-port", ("--ray-address", "headnode"), "'headnode' is not host:port", "allowed:"),
    # data
    Bad(
        "data-root-missing",
        ("--data-root", "{tmp}/nodata"),
        "nodata/mnist/MANIFEST.json",
        "a data root holds",
    ),
    Bad("data-root-unset", ("--data-root", ""), "no data root", "pass --data-root or set"),
    Bad(
        "sha256-wrong",
        DATA,
        "train.parquet: sha256",
        "re-copy",
        setup=edit_manifest(lambda m: m["files"][0].update(sha256="0" * 64)),
    ),
    Bad(
        "parquet-truncated",
        DATA,
        "train.parquet cannot be read as Parquet",
        "re-copy",
        setup=truncated,
    ),
    Bad(
        "column-missing",
        DATA,
        "train.parquet lacks columns ['label']",
        "needs ['image', 'label']",
        setup=edit_train(lambda c: c.pop("label")),
    ),
    Bad(
        "image-undecodable",
        DATA,
        "train.parquet: row 3 image cannot be decoded",
        "allowed: encoded image bytes",
        setup=edit_train(lambda c: c["image"].__setitem__(3, b"not an image")),
    ),
    Bad(
        "label-10",
        DATA,
        "train.parquet: label 10 out of range",
        "allowed 0..9",
        setup=edit_train(lambda c: c["label"].__setitem__(5, 10)),
    ),
    Bad(
        "label-negative",
        DATA,
        "train.parquet: label -1 out of range",
        "allowed 0..9",
        setup=edit_train(lambda c: c["label"].__setitem__(0, -1)),
    ),
    Bad(
        "label-text",
        DATA,
        "train.parquet: labels ['cat'",
        "allowed: integers 0..9",
        setup=edit_train(lambda c: c.update(label=["cat"] * len(c["label"]))),
    ),
    Bad(
        "batch-above-train",
        DATA,
        f"batch_size {SMOKE_BATCH} is larger than the 18 training images",
        "allowed <= 18",
        setup=tiny_mnist,
    ),
    Bad(
        "manifest-not-json",
        DATA,
        "MANIFEST.json is not valid JSON",
        "allowed:",
        setup=manifest_text("{files: ["),
    ),
    Bad(
        "manifest-no-files",
        DATA,
        "MANIFEST.json has no 'files' list",
        "allowed:",
        setup=edit_manifest(lambda m: m.pop("files")),
    ),
    Bad(
        "manifest-lists-missing",
        DATA,
        "extra.parquet is listed in the manifest but missing",
        "re-copy",
        setup=edit_manifest(lambda m: m["files"].append({"file": "extra.parquet", "sha256": "0"})),
    ),
    Bad(
        "folder-missing",
        ("--data", "{tmp}/nowhere"),
        "--data {tmp}/nowhere: not a folder",
        "allowed: a folder of class folders",
    ),
    Bad(
        "folder-one-class",
        ("--data", "{data}"),
        "found 1 class folders",
        "allowed: >= 2",
        setup=image_folder(classes=("a",)),
    ),
    Bad(
        "folder-empty-class",
        ("--data", "{data}"),
        "class folder {data}/b is empty",
        "allowed: at least one image per class",
        setup=image_folder(empty=True),
    ),
    Bad(
        "folder-non-image",
        ("--data", "{data}"),
        "{data}/b/notes.txt is not an image",
        "allowed suffixes: .png",
        setup=image_folder(extra=("notes.txt", b"hello")),
    ),
    Bad(
        "folder-broken-png",
        ("--data", "{data}"),
        "{data}/b/broken.png cannot be decoded",
        "allowed: image files",
        setup=image_folder(extra=("broken.png", b"not a png")),
    ),
    Bad(
        "folder-and-dataset",
        ("--data", "{data}", "--dataset", "mnist"),
        "--data {data} and --dataset mnist",
        "give one",
        setup=image_folder(),
    ),
    Bad(
        "folder-too-few-images",
        ("--data", "{data}"),
        "8 images cannot be split 10 ways",
        "allowed: at least 10 images",
        setup=image_folder(),
    ),
    Bad(
        "group-pattern-bad-regex",
        ("--data", "{data}", "--group-pattern", "(?P<group>[a-z"),
        "--group-pattern '(?P<group>[a-z' does not compile",
        "allowed: a regular expression with a named group (?P<group>...)",
        setup=image_folder(),
    ),
    Bad(
        "group-pattern-no-group",
        ("--data", "{data}", "--group-pattern", "case([0-9]+)"),
        "--group-pattern 'case([0-9]+)' has no group named 'group'",
        "allowed: a regular expression with a named group",
        setup=image_folder(),
    ),
    Bad(
        "group-pattern-misses-a-file",
        ("--data", "{data}", "--group-pattern", "(?P<group>case[0-9]+)"),
        "{data}/a/0.png: --group-pattern '(?P<group>case[0-9]+)' does not match its name",
        "allowed: a pattern whose (?P<group>...) matches every file name",
        setup=image_folder(),
    ),
    Bad(
        "group-pattern-without-data",
        ("--group-pattern", "(?P<group>case[0-9]+)"),
        "--group-pattern (?P<group>case[0-9]+)",
        "allowed: only with --data",
    ),
    Bad(
        "group-pattern-and-csv",
        ("--data", "{data}", "--group-pattern", "(?P<group>x)", "--groups-csv", "{tmp}/g.csv"),
        "--group-pattern (?P<group>x) and --groups-csv {tmp}/g.csv: give one",
        "allowed: a file-name pattern or a CSV",
        setup=image_folder(),
    ),
    Bad(
        "groups-csv-missing",
        ("--data", "{data}", "--groups-csv", "{tmp}/nope.csv"),
        "--groups-csv {tmp}/nope.csv: no such file",
        "allowed: a CSV with columns file and group",
        setup=image_folder(),
    ),
    Bad(
        "groups-csv-no-group-column",
        ("--data", "{data}", "--groups-csv", "{tmp}/g.csv"),
        "--groups-csv {tmp}/g.csv: no column(s) group (header: file, case)",
        "allowed: a CSV with a header row holding columns file and group",
        setup=image_folder(csv="file,case\na/0.png,1\n"),
    ),
]


# ------------------------------------------------------------------ servers and checks


class _WebPage(BaseHTTPRequestHandler):
    """Answers every GET with 200 and an HTML page: a web server, not MLflow."""

    def do_GET(self):
        body = b"<html><body>hello, not MLflow</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def web_servers(tmp_path_factory):
    """Two HTTP servers on loopback that are not MLflow: a page for every path (a thread)
    and ``python -m http.server`` on an empty folder (404 for the MLflow API)."""
    page = ThreadingHTTPServer(("127.0.0.1", 0), _WebPage)
    threading.Thread(target=page.serve_forever, daemon=True).start()
    port = free_port()
    files = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path_factory.mktemp("www"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    files_uri = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(files_uri, timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    yield {"html": f"http://127.0.0.1:{page.server_port}", "files": files_uri}
    page.shutdown()
    page.server_close()
    files.terminate()
    files.wait(10)


def good_args(data_root: Path, uri: str, tmp: Path, name: str) -> list[str]:
    return [
        *("--budget", "smoke", "--data-root", str(data_root), "--tracking-uri", uri),
        *("--results-dir", str(tmp / "res"), "--storage-path", str(tmp / "ray"), "--name", name),
    ]


def assert_nothing_written(tmp: Path, mlflow_uri: str, name: str) -> None:
    res = tmp / "res"
    written = [p for p in res.rglob("*") if p.suffix in (".parquet", ".md", ".json")]
    assert not written, written
    storage = tmp / "ray"
    assert not storage.exists() or not any(storage.iterdir())
    client = MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name("mnist_optimizers")
    if exp is not None:
        runs = client.search_runs([exp.experiment_id], f"attributes.run_name = '{name}'")
        assert not runs, [r.info.run_id for r in runs]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_fails_clearly_before_any_trial(
    case, tmp_path, tiny_data_root, mlflow_server, web_servers, capsys, monkeypatch
):
    for var in (
        "RAY_ADDRESS",
        "CNNSWEEP_DATA_ROOT",
        "CNNSWEEP_RESULTS_DIR",
        "CNNSWEEP_WEIGHTS_DIR",
    ):
        monkeypatch.delenv(var, raising=False)

    def tripwire(*args, **kw):
        raise AssertionError(f"{case.id}: bad input reached run_sweep (Ray and trials)")

    monkeypatch.setattr("sweeps.orchestrate.run_sweep", tripwire)
    ctx = {"tmp": tmp_path, "port": free_port(), **web_servers}
    ctx["data"] = case.setup(tmp_path, tiny_data_root) if case.setup else tmp_path / "data"
    for var, value in case.env:
        monkeypatch.setenv(var, value.format(**ctx))
    name = f"bad-{case.id}"
    argv = good_args(tiny_data_root, mlflow_server, tmp_path, name)
    argv += [a.format(**ctx) for a in case.args]

    if case.usage:
        with pytest.raises(SystemExit) as exc:
            main(SWEEP, argv)
        code = exc.value.code
    else:
        code = main(SWEEP, argv)

    assert code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    assert case.bad.format(**ctx) in lines[0], lines[0]
    assert case.allowed.format(**ctx) in lines[0], lines[0]
    assert_nothing_written(tmp_path, mlflow_server, name)
    if "--name" in case.args and "escape" in case.args[-1]:  # nothing written where it points
        assert not (tmp_path / "ray" / case.args[-1]).resolve().exists()
        assert not (tmp_path / "res" / "mnist_optimizers" / "runs" / case.args[-1]).exists()


def test_the_table_is_big_and_distinct():
    assert len(CASES) >= 25
    assert len({c.id for c in CASES}) == len(CASES)
    assert len({(c.args, c.setup, c.env) for c in CASES}) == len(CASES)


@pytest.mark.slow
def test_gpus_beyond_the_cluster_fail_before_trials(
    ray_local, mlflow_server, tiny_data_root, tmp_path, capsys
):
    want = ray_local.cluster_resources().get("GPU", 0) + 1  # none here; one more on a GPU box
    argv = good_args(tiny_data_root, mlflow_server, tmp_path, "bad-gpus")
    assert main(SWEEP, [*argv, "--gpus-per-trial", f"{want:g}"]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(lines) == 1
    assert f"--gpus-per-trial {want:g}: the Ray cluster has {want - 1:g} GPUs" in lines[0]
    assert "allowed:" in lines[0]
    assert_nothing_written(tmp_path, mlflow_server, "bad-gpus")


@pytest.mark.slow
def test_cpus_no_node_has_fail_before_trials(
    ray_local, mlflow_server, tiny_data_root, tmp_path, capsys, monkeypatch
):
    """Joining a cluster (here: the test's 2-CPU Ray, as $RAY_ADDRESS), a trial larger
    than every node would wait forever in Tune's queue; it fails before any trial."""
    monkeypatch.setenv("RAY_ADDRESS", ray_local.get_runtime_context().gcs_address)
    argv = good_args(tiny_data_root, mlflow_server, tmp_path, "bad-cpus")
    assert main(SWEEP, [*argv, "--cpus-per-trial", "3"]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(lines) == 1
    assert "--cpus-per-trial 3: no node of the Ray cluster has 3 CPUs" in lines[0]
    assert "(the largest has 2); allowed: 1..2" in lines[0]
    assert_nothing_written(tmp_path, mlflow_server, "bad-cpus")


# ------------------------------------------------------------------------- property tests

FIELDS = {f.name: str(f.type) for f in fields(TrialConfig)}
GOOD = {"model": "resnet18", "optimizer": "sgd", "lr": 0.01, "epochs": 2, "image_size": 32}
WORDS = [*list_models(), *OPTIMIZERS, *LR_SCHEDULES, *SELECT_BY, *TRAIN_RULES, *AUGMENTATIONS]
ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 300),
    st.integers(-(2**1100), 2**1100),  # beyond float's range
    st.floats(-1, 2),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([*WORDS, "nan", "0.1", ""]),
    st.text(max_size=10),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
ANY_KEY = st.one_of(st.sampled_from(sorted(FIELDS)), st.text(max_size=10), st.integers())
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_valid(cfg: TrialConfig) -> None:
    """What every accepted config must satisfy, stated independently of ``check``."""
    for key, ann in FIELDS.items():
        value = getattr(cfg, key)
        kind = {"int": int, "float": float, "bool": bool, "str": str}[ann.split(" ")[0]]
        assert type(value) is kind or (value is None and "None" in ann), (key, value)
        if kind is float:
            assert math.isfinite(value), (key, value)
    assert cfg.model in list_models() and cfg.optimizer in OPTIMIZERS
    assert 0 < cfg.lr <= 1
    for key in ("epochs", "batch_size", "num_threads", "eval_batch_size", "check_every"):
        assert getattr(cfg, key) >= 1, key
    assert 0 <= cfg.momentum < 1 and 0 <= cfg.label_smoothing < 1 and cfg.weight_decay >= 0
    assert 0 <= cfg.seed < 2**32 and cfg.early_stop_patience >= 0 and cfg.report_worst >= 0
    assert TrialConfig.from_dict(cfg.to_dict()) == cfg


@FUZZ
@given(extra=st.dictionaries(ANY_KEY, ANY_VALUE, max_size=4), on_good=st.booleans())
def test_fuzzed_trial_configs_are_valid_or_config_errors(extra, on_good):
    try:
        cfg = TrialConfig.from_dict({**GOOD, **extra} if on_good else extra)
    except ConfigError:
        return
    assert_valid(cfg)


@pytest.mark.parametrize("key", sorted(FIELDS))
@settings(max_examples=40, deadline=None)
@given(value=ANY_VALUE)
def test_each_config_key_fuzzed_alone(key, value):
    """A good config with one key fuzzed, so every key's own check is reached."""
    try:
        cfg = TrialConfig.from_dict({**GOOD, key: value})
    except ConfigError:
        return
    assert_valid(cfg)


FLAGS = [
    "--budget",
    "--search",
    "--num-samples",
    "--models",
    "--optimizers",
    "--lrs",
    "--epochs",
    "--momentum",
    "--grace-period",
    "--reduction-factor",
    "--asha-quorum",
    "--seed",
    "--dataset",
    "--split",
    "--cpus-per-trial",
    "--gpus-per-trial",
    "--max-concurrent",
    "--max-failures",
    "--weights",
]
FLAG_VALUE = st.one_of(
    st.integers(-3, 40).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", ",", "nan", "-inf", "1e400", "0.5", "0.01,0.1", "resnet18", "vgg16"]),
    st.sampled_from(["adam,sgd", "grid", "optuna", "smoke", "cpu", "mnist", "random", "2**40"]),
    st.text(max_size=8),
)


def test_data_folder_is_refused_by_a_table_of_registered_datasets():
    """cifar_cnns' rows name their datasets; a --data folder would be silently ignored."""
    args = build_parser(cifar_cnns.SWEEP).parse_args(["--data", "/some/folder"])
    with pytest.raises(ConfigError, match=r"--data /some/folder: this sweep fills .* allowed:"):
        make_plan(cifar_cnns.SWEEP, args)


@FUZZ
@given(
    module=st.sampled_from([mnist_optimizers, chromosome_baselines]),
    flags=st.lists(st.tuples(st.sampled_from(FLAGS), FLAG_VALUE), max_size=5),
)
def test_fuzzed_flags_plan_or_fail_with_config_error(module, flags):
    argv = [f"{flag}={value}" for flag, value in flags]
    try:
        args = build_parser(module.SWEEP).parse_args(argv)
    except SystemExit as exc:
        assert exc.code == 2
        return
    try:
        plan = make_plan(module.SWEEP, args)
    except ConfigError:
        return
    epochs = plan.base_config["epochs"]
    assert 1 <= plan.tune.grace_period <= epochs and 2 <= plan.tune.reduction_factor < math.inf
    assert plan.tune.num_samples >= 1 and plan.base_config["num_threads"] >= 1
    assert args.max_failures >= 0 and (args.max_concurrent is None or args.max_concurrent >= 1)
    assert args.gpus_per_trial is None or 0 <= args.gpus_per_trial < math.inf
    if plan.cells is not None:
        for cell in plan.cells.values():
            assert_valid(TrialConfig.from_dict(cell))
    elif plan.tune.search == "grid":
        for model in plan.models:
            for opt in plan.optimizers:
                for lr in plan.lrs:
                    assert_valid(
                        TrialConfig.from_dict(
                            {**plan.base_config, "model": model, "optimizer": opt, "lr": lr}
                        )
                    )
