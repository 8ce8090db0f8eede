"""A user's own folder of class folders, as their imaging system exports it: TIFFs that
Pillow refuses are read with tifffile, and the case of each file (from its name or a CSV)
gives a split in which no case is in two of train, validation and test."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from trainables.data import DataError, FileGroups, load_image_folder, load_splits

SIDE = 28
CLASSES = ("a", "b", "c")
CASES = 12
# <class>_<n>_<case>_<cell>_<id>.tiff, as the karyotyping export names its files
PATTERN = r"^[^_]+_\d+_(?P<group>case\d+)_"


def malformed_tiff(img: np.ndarray, extra: bytes = bytes(6)) -> bytes:
    """An uncompressed greyscale TIFF (8- or 16-bit) laid out as the user's files are:
    StripOffsets and StripByteCounts list two strips (the image, then ``extra``) while
    RowsPerStrip is the image height, so there is room for one strip only."""
    h, w = img.shape
    data = img.astype(img.dtype.newbyteorder("<")).tobytes()
    entries = [  # (tag, type: 3 SHORT / 4 LONG, count, value or offset)
        (256, 4, 1, w),  # ImageWidth
        (257, 4, 1, h),  # ImageLength
        (258, 3, 1, 8 * img.dtype.itemsize),  # BitsPerSample
        (259, 3, 1, 1),  # Compression: none
        (262, 3, 1, 1),  # PhotometricInterpretation: black is zero
        (273, 4, 2, 0),  # StripOffsets: two, stored at `arrays`
        (277, 3, 1, 1),  # SamplesPerPixel
        (278, 4, 1, h),  # RowsPerStrip: the whole image
        (279, 4, 2, 0),  # StripByteCounts: two, stored at `arrays + 8`
        (284, 3, 1, 1),  # PlanarConfiguration: contiguous
    ]
    arrays = 8 + 2 + 12 * len(entries) + 4
    pixels = arrays + 16
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        value = {273: arrays, 279: arrays + 8}.get(tag, value)
        packed = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, count) + packed
    ifd += struct.pack("<I", 0)  # no next IFD
    strips = struct.pack("<2I", pixels, pixels + len(data)) + struct.pack(
        "<2I", len(data), len(extra)
    )
    return b"II*\x00" + struct.pack("<I", 8) + ifd + strips + data + extra


def pillow_refuses(path) -> str:
    from PIL import Image

    with pytest.raises(OSError) as exc, Image.open(path) as im:
        im.load()
    return str(exc.value)


def scaled(img: np.ndarray) -> np.ndarray:
    """What both readers make of a 16-bit image: its maximum becomes 255."""
    return (255 * img.astype(np.float64) / img.max()).astype(np.uint8)


def random_image(rng, dtype) -> np.ndarray:
    high = 250 if dtype == np.uint8 else 4000  # 12-bit data in 16-bit files, as cameras write
    return rng.integers(0, high, (SIDE, SIDE)).astype(dtype)


def test_pillow_refused_tiffs_are_read_with_tifffile(tmp_path):
    """8- and 16-bit files in the malformed layout, beside a proper multi-strip TIFF of
    each depth: all decode to the expected pixels, and the count says which needed tifffile."""
    import tifffile

    rng = np.random.default_rng(0)
    expected, with_tifffile = [], 0
    for name in CLASSES[:2]:
        (tmp_path / name).mkdir()
        for j, dtype in enumerate((np.uint8, np.uint16)):
            img = random_image(rng, dtype)
            want = img if dtype == np.uint8 else scaled(img)
            bad = tmp_path / name / f"{j}_{np.dtype(dtype).name}_malformed.tif"
            bad.write_bytes(malformed_tiff(img))
            assert "image file is truncated (6 bytes not processed)" in pillow_refuses(bad)
            good = tmp_path / name / f"{j}_{np.dtype(dtype).name}_strips.tiff"
            tifffile.imwrite(good, img, rowsperstrip=8)  # 4 strips; Pillow reads these
            assert len(tifffile.TiffFile(good).pages.first.dataoffsets) == 4
            expected += [want, want]  # sorted: malformed, then strips
            with_tifffile += 1
    raw = load_image_folder(tmp_path, False, SIDE)  # SIDE: no resize, pixels compare exactly
    assert raw.train.images.shape == (8, 1, SIDE, SIDE)
    for got, want in zip(raw.train.images[:, 0], expected, strict=True):
        np.testing.assert_array_equal(got, want)
    assert raw.info["read_with_tifffile"] == with_tifffile == 4


def test_a_file_neither_reader_reads_is_a_data_error_naming_it(tmp_path):
    rng = np.random.default_rng(1)
    for name in CLASSES[:2]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "ok.tif").write_bytes(malformed_tiff(random_image(rng, np.uint8)))
    broken = tmp_path / "b" / "zz_broken.tiff"
    broken.write_bytes(b"II*\x00" + bytes(20))
    with pytest.raises(DataError) as exc:
        load_image_folder(tmp_path, False, SIDE)
    msg = str(exc.value)
    assert msg.startswith(f"{broken} cannot be decoded as an image (Pillow: ")
    assert "; tifffile: " in msg and "allowed: image files that Pillow reads, or TIFFs" in msg


def case_folder(root, per_case: int = 2):
    """3 class folders x 12 cases x ``per_case`` malformed 8-bit TIFFs, named by case and
    cell; returns {relative path: case}."""
    rng = np.random.default_rng(2)
    cases = {}
    for k, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for c in range(CASES):
            for i in range(per_case):
                img = random_image(rng, np.uint8)
                img[8 + 4 * k : 14 + 4 * k, 8:14] = 255  # learnable: a square per class
                file = f"{name}_{i}_case{c:02d}_cell{i}_{k}{c:02d}{i}.tiff"
                (root / name / file).write_bytes(malformed_tiff(img))
                cases[f"{name}/{file}"] = f"case{c:02d}"
    return cases


@pytest.fixture(scope="module")
def cases_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cases") / "export"
    return root, case_folder(root)


def assert_split_by_case(d, cases: dict[str, str]) -> None:
    ids = [set(s.groups.tolist()) for s in (d.train, d.val, d.test)]
    assert not ids[0] & ids[1] and not ids[0] & ids[2] and not ids[1] & ids[2]
    assert ids[0] | ids[1] | ids[2] == set(cases.values())
    assert d.info["split"] == "grouped" and "split_warning" not in d.info
    assert d.info["groups"] == dict(zip(("train", "val", "test"), map(len, ids), strict=True))
    assert d.info["read_with_tifffile"] == len(cases)


def test_grouped_split_by_file_name_pattern(cases_root):
    root, cases = cases_root
    d = load_splits("image_folder", root=root, image_size=SIDE, groups=FileGroups(PATTERN))
    assert_split_by_case(d, cases)
    assert d.info["grouped_by"] == f"file name ~ {PATTERN}"
    raw = load_image_folder(root, False, SIDE, groups=FileGroups(PATTERN))
    assert raw.train.groups.tolist() == [cases[k] for k in sorted(cases)]  # file order


def test_grouped_split_by_csv(cases_root, tmp_path):
    root, cases = cases_root
    csv = tmp_path / "groups.csv"
    rows = [  # relative paths and bare names mixed, and a row for a file not in the folder
        f"{rel if i % 2 else rel.split('/')[1]},{case}"
        for i, (rel, case) in enumerate(sorted(cases.items()))
    ]
    csv.write_text("group_note,file,group\n" + "".join(f"x,{r}\n" for r in rows) + "x,gone.tif,z\n")
    d = load_splits("image_folder", root=root, image_size=SIDE, groups=FileGroups(csv=csv))
    assert_split_by_case(d, cases)
    assert d.info["grouped_by"] == f"csv {csv}"
    raw = load_image_folder(root, False, SIDE, groups=FileGroups(csv=csv))
    assert raw.train.groups.tolist() == [cases[k] for k in sorted(cases)]


def test_without_groups_the_split_is_by_image_and_says_so(cases_root):
    d = load_splits("image_folder", root=cases_root[0], image_size=SIDE)
    assert d.info["split"] == "random" and "groups" not in d.info
    assert d.info["split_warning"] == (
        "split by image: images of one case may be in both train and test; "
        "pass --group-pattern or --groups-csv"
    )


def test_group_errors_name_the_file(cases_root, tmp_path):
    root, cases = cases_root
    first = root / "a" / sorted(cases)[0].split("/")[1]
    with pytest.raises(DataError, match=r"does not match its name") as exc:
        load_splits("image_folder", root=root, groups=FileGroups(r"(?P<group>cell9)"))
    assert str(exc.value).startswith(f"{first}: --group-pattern '(?P<group>cell9)'")
    csv = tmp_path / "g.csv"
    csv.write_text("file,case\na/x.tif,1\n")
    with pytest.raises(DataError, match=r"no column\(s\) group \(header: file, case\); allowed"):
        load_splits("image_folder", root=root, groups=FileGroups(csv=csv))
    rel = sorted(cases)
    csv.write_text("file,group\n" + "".join(f"{r},{cases[r]}\n" for r in rel[1:]))
    with pytest.raises(DataError) as exc:
        load_splits("image_folder", root=root, groups=FileGroups(csv=csv))
    assert str(exc.value).startswith(f"{first} not in --groups-csv {csv}; allowed: a row per")
    csv.write_text(f"file,group\n{rel[0]},1\n{rel[0]},2\n")
    with pytest.raises(DataError, match=r"line 3: .* is given groups '1' and '2'"):
        load_splits("image_folder", root=root, groups=FileGroups(csv=csv))


def test_a_bare_name_in_two_class_folders_is_ambiguous(tmp_path):
    rng = np.random.default_rng(3)
    for name in CLASSES[:2]:
        (tmp_path / "d" / name).mkdir(parents=True)
        (tmp_path / "d" / name / "same.tif").write_bytes(
            malformed_tiff(random_image(rng, np.uint8))
        )
    csv = tmp_path / "g.csv"
    csv.write_text("file,group\nsame.tif,1\n")
    with pytest.raises(DataError, match=r"same.tif names 2 files of .*; allowed: <class folder>/"):
        load_splits("image_folder", root=tmp_path / "d", groups=FileGroups(csv=csv))


@pytest.mark.slow
def test_sweep_on_a_malformed_tiff_export_splits_by_case(
    ray_local, mlflow_server, tmp_path, capsys
):
    """The user's command: --data on the export, --group-pattern for the case; the sweep
    finishes and its provenance shows the grouped split and the files tifffile read."""
    from sweeps import mnist_optimizers
    from sweeps.runner import main

    root = tmp_path / "export"
    cases = case_folder(root)
    argv = [
        *("--budget", "smoke", "--data", str(root), "--group-pattern", PATTERN),
        *("--tracking-uri", mlflow_server, "--results-dir", str(tmp_path / "res")),
        *("--storage-path", str(tmp_path / "ray"), "--name", "by-case"),
        *("--lrs", "0.01", "--epochs", "1"),  # one short trial: the data path is under test
    ]
    assert main(mnist_optimizers.SWEEP, argv) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("[data] image_folder:"))
    assert f"{len(cases)} TIFFs read with tifffile" in line and "split: grouped (" in line
    assert "[data] warning" not in out
    folder = tmp_path / "res" / "mnist_optimizers"
    data = json.loads((folder / "provenance.json").read_text())["data"]
    assert data["split"] == "grouped" and data["grouped_by"] == f"file name ~ {PATTERN}"
    assert data["read_with_tifffile"] == len(cases) == 72
    # every case counted in exactly one split: the per-split counts add up to the cases
    assert sum(data["groups"].values()) == CASES and min(data["groups"].values()) >= 1
    assert "split_warning" not in data
    report = (folder / "report.md").read_text()
    assert "images of one case may be in both" not in report


def test_report_says_when_a_pool_was_split_by_image(cases_root):
    """The report's summary repeats the data info's warning, and only when there is one."""
    import pandas as pd

    from sweeps import report
    from sweeps.doc import Doc

    trials = pd.DataFrame(
        [
            {
                **{"trial_id": "t0", "label": "", "dataset": "image_folder", "model": "resnet18"},
                **{"optimizer": "sgd", "lr": 0.01, "max_epochs": 1, "status": "TERMINATED"},
                **{"epochs_run": 1, "stopped_early": False, "best_val_acc": 0.5, "test_acc": 0.4},
            }
        ]
    )
    texts = {}
    for how, groups in (("by image", None), ("by case", FileGroups(PATTERN))):
        d = load_splits("image_folder", root=cases_root[0], image_size=SIDE, groups=groups)
        prov = {"data": {"name": d.name, "source": d.source, "sha256": d.sha256, **d.info}}
        doc = Doc()
        report.summary_section(doc, trials, prov, {})
        texts[how] = doc.markdown()
    sentence = (
        "Split by image: images of one case may be in both train and test; "
        "pass --group-pattern or --groups-csv."
    )
    assert sentence in texts["by image"] and "Split by" not in texts["by case"]
