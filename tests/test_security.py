"""Security defaults: checkpoints and weights are loaded as data, never as code, and
tracking credentials never reach logs, params, tags, artifacts, Tune state or Parquet."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from sweeps.mnist_optimizers import SWEEP
from sweeps.runner import main
from sweeps.tracking_uri import resolve_tracking_uri
from trainables.engine import CHECKPOINT_FILE, load_checkpoint
from trainables.models import build_model, load_matching_weights

SECRET = "Sup3r-S3cret-pw"


class Payload:
    """Unpickling this runs code: it creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoints_and_weights_are_never_unpickled_as_code(tmp_path):
    marker = tmp_path / "pwned"
    state = {"model": {"w": torch.zeros(1)}, "extra": Payload(marker)}
    torch.save(state, tmp_path / CHECKPOINT_FILE)
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(tmp_path)
    model = build_model("resnet18", num_classes=10, in_channels=1)
    with pytest.raises(pickle.UnpicklingError):
        load_matching_weights(model, tmp_path / CHECKPOINT_FILE)
    assert not marker.exists()
    # the control: a plain unpickle of the same file does run the payload
    torch.load(tmp_path / CHECKPOINT_FILE, weights_only=False)
    assert marker.exists()


def test_credentials_leave_the_uri(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    uri = resolve_tracking_uri(f"https://sweeper:{SECRET}@mlflow.example.org:8443/prefix")
    assert uri == "https://mlflow.example.org:8443/prefix"
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "sweeper"
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == SECRET


@pytest.mark.slow
def test_no_secret_in_any_output(
    ray_local, mlflow_server, tiny_data_root, tmp_path, capfd, monkeypatch
):
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    uri = mlflow_server.replace("http://", f"http://sweeper:{SECRET}@")
    args = ["--budget", "smoke", "--epochs", "1", "--lrs", "0.01", "--optimizers", "adam"]
    args += ["--data-root", str(tiny_data_root), "--tracking-uri", uri, "--name", "secret"]
    args += ["--results-dir", str(tmp_path / "res"), "--storage-path", str(tmp_path / "ray")]
    assert main(SWEEP, args) == 0
    out = capfd.readouterr()
    assert SECRET not in out.out + out.err
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) > 20  # results, Tune state, checkpoints, figures
    assert not [str(p) for p in files if SECRET.encode() in p.read_bytes()]

    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name(SWEEP.name)
    runs = client.search_runs([exp.experiment_id], "attributes.run_name = 'secret'")
    assert len(runs) == 1, "the sweep logged with the credentials it was given"
    parent = runs[0].info.run_id
    kids = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent}'")
    assert len(kids) == 1
    for run in [runs[0], *kids]:
        text = repr(run.data.params) + repr(run.data.tags)
        assert SECRET not in text
        folder = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / "dl")))
        for f in folder.rglob("*"):
            assert not f.is_file() or SECRET.encode() not in f.read_bytes(), f
