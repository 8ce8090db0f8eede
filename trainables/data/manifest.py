"""File digests and ``MANIFEST.json``: every data file is checked before it is decoded."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from trainables.data.registry import DataError

MANIFEST_SHAPE = 'allowed: {"files": [{"file": <name>, "sha256": <hex digest>}, ...]}'


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_manifest(folder: Path) -> dict:
    """``<folder>/MANIFEST.json``, checked for shape: a hand-edited or half-copied manifest
    fails here, naming the file, rather than as a JSONDecodeError or KeyError later."""
    path = folder / "MANIFEST.json"
    if not path.is_file():
        raise DataError(f"{path} does not exist; a data root holds <dataset>/MANIFEST.json")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError both are
        raise DataError(f"{path} is not valid JSON ({exc}); {MANIFEST_SHAPE}") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, list) or not all(
        isinstance(e, dict) and isinstance(e.get("file"), str) and isinstance(e.get("sha256"), str)
        for e in files
    ):
        raise DataError(f"{path} has no 'files' list of file/sha256 entries; {MANIFEST_SHAPE}")
    return manifest


def verify_files(folder: Path, manifest: dict) -> str:
    """Check every file's sha256 against the manifest; return one digest over all of them."""
    digests = []
    for entry in manifest["files"]:
        path = folder / entry["file"]
        if not path.is_file():
            raise DataError(
                f"{path} is listed in the manifest but missing; re-copy the dataset folder"
            )
        got = sha256_file(path)
        if got != entry["sha256"]:
            raise DataError(
                f"{path}: sha256 {got} does not match the manifest's {entry['sha256']}; the "
                "file is damaged or was changed: re-copy it"
            )
        digests.append(f"{entry['file']}:{got}")
    return hashlib.sha256("\n".join(sorted(digests)).encode()).hexdigest()
