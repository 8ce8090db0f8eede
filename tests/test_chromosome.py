"""Chromosome data: grouped splits never leak a case, class-folder trees of TIFFs load with
no code change, and the pretrained-weights fallback is recorded."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sweeps import chromosome_baselines
from sweeps.flags import build_parser
from sweeps.plan import make_plan
from trainables.data import (
    CHROMOSOME_CLASSES,
    DataError,
    ImageSet,
    class_names,
    load_splits,
    pad_resize,
    split_pool,
)


@settings(max_examples=40, deadline=None)
@given(
    n_groups=st.integers(20, 60),
    per_group=st.integers(3, 12),
    n_classes=st.integers(2, 6),
    seed=st.integers(0, 10_000),
)
def test_grouped_split_never_puts_a_group_in_two_splits(n_groups, per_group, n_classes, seed):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_groups), per_group)
    labels = rng.integers(0, n_classes, len(groups))
    pool = ImageSet(np.zeros((len(groups), 1, 2, 2), np.uint8), labels, groups.astype(str))
    tr, va, te = split_pool(pool, method="grouped", seed=seed)
    sets = [set(groups[i]) for i in (tr, va, te)]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert sorted(np.concatenate([tr, va, te]).tolist()) == list(range(len(groups)))
    assert 0.6 < len(tr) / len(groups) < 0.95


def test_random_split_is_stratified_by_image():
    labels = np.repeat(np.arange(4), 50)
    pool = ImageSet(np.zeros((200, 1, 2, 2), np.uint8), labels, None)
    tr, va, te = split_pool(pool, method="random", seed=0)
    assert (len(tr), len(va), len(te)) == (160, 20, 20)
    assert np.bincount(labels[te]).tolist() == [5, 5, 5, 5]
    with pytest.raises(DataError, match="needs group ids"):
        split_pool(pool, method="grouped", seed=0)


def test_pad_resize_keeps_aspect_and_background():
    img = np.full((1, 40, 10), 255, np.uint8)
    img[:, 5:35, 3:7] = 0  # a dark bar on white
    out = pad_resize(img, 20)
    assert out.shape == (1, 20, 20)
    assert out[0, 0, 0] == 255 and out[0, 10, 0] == 255  # padded with white, not stretched
    assert out[0, 10, 10] < 100  # the bar is still in the middle
    small = pad_resize(img[:, :20], 20, canvas=40)  # same canvas: half the height survives
    assert (small[0] < 128).sum() < (pad_resize(img, 20, canvas=40)[0] < 128).sum()


def test_class_folder_names():
    assert class_names([str(i) for i in range(23, -1, -1)]) == [str(i) for i in range(24)]
    assert class_names(list(reversed(CHROMOSOME_CLASSES))) == list(CHROMOSOME_CLASSES)
    assert class_names(["b", "a"]) == ["a", "b"]


def write_tiff_tree(root, images, labels, names):
    from PIL import Image

    for name in names:
        (root / name).mkdir(parents=True, exist_ok=True)
    for i, (img, y) in enumerate(zip(images, labels, strict=True)):
        Image.fromarray(img[0]).save(root / names[y] / f"img{i:05d}.tif")


@pytest.fixture(scope="module")
def gband_tiff_tree(tmp_path_factory, shared_data_root):
    """24 class folders of TIFFs of varying size, made from the real G-band Parquet."""
    import pyarrow.parquet as pq

    from trainables.data import decode_png

    table = pq.read_table(
        shared_data_root / "chromosome_gband_612cells" / "all.parquet", columns=["image", "label"]
    ).to_pandas()
    pick = table.groupby("label").head(12)
    root = tmp_path_factory.mktemp("tiff") / "chromosomes"
    write_tiff_tree(
        root,
        [decode_png(b) for b in pick["image"]],
        pick["label"].to_numpy(),
        [str(i) for i in range(24)],
    )
    return root


def test_tiff_tree_loads_like_the_parquet_set(gband_tiff_tree):
    d = load_splits("image_folder", root=gband_tiff_tree, image_size=48, split="random")
    assert d.classes == CHROMOSOME_CLASSES  # folders 0..23 named as 1..22, X, Y
    assert d.train.images.shape[1:] == (1, 48, 48)
    assert len(d.train) + len(d.val) + len(d.test) == 24 * 12
    assert d.source.startswith("folder:") and len(d.sha256) == 64


def test_tiff_tree_errors(tmp_path, gband_tiff_tree, copy_tree):
    root = tmp_path / "t"
    copy_tree(gband_tiff_tree, root)
    (root / "5" / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match=r"notes.txt is not an image; allowed suffixes"):
        load_splits("image_folder", root=root, image_size=32, split="random")
    (root / "5" / "notes.txt").unlink()
    for f in (root / "7").iterdir():
        f.unlink()
    with pytest.raises(DataError, match=r"class folder .*/7 is empty"):
        load_splits("image_folder", root=root, image_size=32, split="random")


def test_gband_grouped_split_counts(shared_data_root):
    d = load_splits("chromosome_gband", root=shared_data_root, image_size=32)
    assert len(d.train) + len(d.val) + len(d.test) == 28135
    assert d.info["groups"]["train"] + d.info["groups"]["val"] + d.info["groups"]["test"] == 372
    assert not set(d.train.groups) & set(d.test.groups)
    assert len(d.info["per_class"]["test"]) == 24 and min(d.info["per_class"]["test"]) > 0


def test_pretrained_fallback_is_recorded(monkeypatch):
    from torchvision.models import _api

    from trainables.models import build_model

    def offline(*a, **k):
        raise OSError("no network")

    monkeypatch.setattr(_api.WeightsEnum, "get_state_dict", offline)
    with pytest.warns(UserWarning, match="training from scratch"):
        model = build_model("resnet50", num_classes=24, image_size=32, pretrained=True)
    assert model.weights_source == "scratch (ImageNet weights unavailable: OSError)"
    assert build_model("resnet50", num_classes=24, image_size=32).weights_source == "scratch"


@pytest.mark.slow
def test_chromosome_sweep_on_a_tiff_folder(ray_local, mlflow_server, gband_tiff_tree, tmp_path):
    """The same sweep, pointed at 24 class folders of TIFFs by --data alone."""
    from mlflow.tracking import MlflowClient

    from sweeps.chromosome_baselines import SWEEP
    from sweeps.results import load_results
    from sweeps.runner import main

    rc = main(
        SWEEP,
        [
            "--budget",
            "smoke",
            "--data",
            str(gband_tiff_tree),
            "--split",
            "random",
            "--tracking-uri",
            mlflow_server,
            "--results-dir",
            str(tmp_path / "res"),
            "--storage-path",
            str(tmp_path / "ray"),
            "--name",
            "tiff",
        ],
    )
    assert rc == 0
    for engine in ("pyarrow", "fastparquet"):
        t = load_results("chromosome_baselines", tmp_path / "res", engine=engine)
        assert {
            "trials",
            "epochs",
            "table1_models",
            "table2_metrics",
            "table3_per_class",
            "table4_quartiles",
        } <= set(t)
    t2 = t["table2_metrics"].set_index("model")
    assert set(t2.index) == {"mobilenet_v2", "resnet50"}
    assert t2.loc["resnet50", "published_accuracy"] == 98.62
    assert t2["ours_accuracy"].between(0, 100).all()
    assert (t2["ours_inference_s_per_1000_b1"] > 0).all()
    t1 = t["table1_models"].set_index("model")
    assert abs(t1.loc["resnet50", "ours_gflops_224px"] - 4.11) / 4.11 < 0.02
    assert abs(t1.loc["resnet50", "ours_params_m"] - 23.56) < 0.01  # 24-class head, as published
    t3 = t["table3_per_class"]
    assert len(t3) == 2 * 25 and set(t3["class"]) == {*CHROMOSOME_CLASSES, "avg"}
    trials = t["trials"]
    assert trials["weights_source"].notna().all()
    child = trials["mlflow_run_id"].iloc[0]
    client = MlflowClient(mlflow_server)
    assert "test_acc_class_X" in client.get_run(child).data.metrics
    assert "confusion_matrix.png" in {a.path for a in client.list_artifacts(child)}
    md = (tmp_path / "res" / "chromosome_baselines" / "table2_metrics.md").read_text()
    assert "TN/(TP+TN)" in md and "F1" in md


@pytest.mark.parametrize(
    "flags, split",
    [
        (["--budget", "paper"], "random"),  # the paper's protocol: by image (its line 228)
        (["--budget", "paper", "--split", "grouped"], "grouped"),  # leak-free on request
        (["--budget", "cpu"], "random"),
        (["--budget", "cpu", "--split", "grouped"], "grouped"),
    ],
)
def test_each_budget_splits_as_its_paper_unless_told(flags, split):
    args = build_parser(chromosome_baselines.SWEEP).parse_args([*flags, "--weights", "scratch"])
    assert make_plan(chromosome_baselines.SWEEP, args).data.split == split


def test_a_by_image_preset_runs_leak_free_twins_beside_its_cells():
    """cpu: the paper's by-image split for all eight models, and for the five fastest a
    twin on the split grouped by case, ranked only against its own split."""
    sweep = chromosome_baselines.SWEEP
    plan = make_plan(sweep, build_parser(sweep).parse_args(["--budget", "cpu"]))
    twins = {k: c for k, c in plan.cells.items() if c.get("split")}
    assert len(plan.cells) == 8 + 5
    assert {c["model"] for c in twins.values()} == set(sweep.budgets["cpu"].leak_free)
    assert {c["split"] for c in twins.values()} == {"grouped"}
    assert all(k.endswith(" / leak-free split") for k in twins)
    assert plan.other_splits == (("chromosome_gband", "grouped"),)
    groups = plan.asha_groups
    assert groups["resnet50 / adam / lr 0.001"] == "chromosome_gband"
    assert groups["resnet50 / adam / lr 0.001 / leak-free split"] == "chromosome_gband-grouped"
    # the paper preset: ASHA stops no cell at the paper's lr 1e-4, nor its twin, and may
    # stop the others
    paper = make_plan(sweep, build_parser(sweep).parse_args(["--budget", "paper"]))
    assert paper.protected == {k for k, c in paper.cells.items() if c["lr"] == 1e-4}
    assert len(paper.protected) == 2 * 2 * 8  # SGD and Adam, each with its twin, 8 models
    assert len(paper.cells) > len(paper.protected)
    # the leak-free split asked for alone, or only models without twins: a plain grid
    for flags in (["--split", "grouped"], ["--models", "resnet152"]):
        args = build_parser(sweep).parse_args(["--budget", "cpu", *flags])
        assert make_plan(sweep, args).cells is None


@pytest.mark.slow
def test_leak_free_twin_beside_the_by_image_trial(
    ray_local, mlflow_server, shared_data_root, tmp_path
):
    """The smoke preset on the registered G-band set: MobileNetV2's row of Table 2 has its
    by-image accuracy (compared with the paper) and its twin's leak-free one beside it."""
    from sweeps.results import load_results
    from sweeps.runner import main

    res = tmp_path / "res"
    flags = ["--budget", "smoke", "--weights", "scratch", "--data-root", str(shared_data_root)]
    flags += ["--tracking-uri", mlflow_server, "--results-dir", str(res)]
    rc = main(chromosome_baselines.SWEEP, [*flags, "--storage-path", str(tmp_path / "ray")])
    assert rc == 0
    t = load_results("chromosome_baselines", res, engine="fastparquet")
    trials = t["trials"]
    assert sorted(trials["split"].fillna("-")) == ["-", "-", "grouped"]
    twin = trials[trials["split"] == "grouped"].iloc[0]
    plain = trials[(trials["model"] == "mobilenet_v2") & trials["split"].isna()].iloc[0]
    t2 = t["table2_metrics"].set_index("model")
    assert len(t2) == 2  # one row per model: the twin is a column, not a row
    row = t2.loc["mobilenet_v2"]
    assert row["ours_accuracy"] == pytest.approx(100 * plain["test_acc"])
    assert row["ours_accuracy_leak_free"] == pytest.approx(100 * twin["test_acc"])
    assert row["leak_pp"] == pytest.approx(row["ours_accuracy"] - row["ours_accuracy_leak_free"])
    assert pd.isna(t2.loc["resnet50", "ours_accuracy_leak_free"])
    prov = json.loads((res / "chromosome_baselines" / "provenance.json").read_text())
    splits = {k: v["split"] for k, v in prov["data"].items() if isinstance(v, dict)}
    assert splits == {"chromosome_gband": "random", "chromosome_gband-grouped": "grouped"}
