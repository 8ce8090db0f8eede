"""ImageNet weight files as an input: found in a local folder first, checked, recorded.

A weights folder (``--weights-dir`` / ``$CNNSWEEP_WEIGHTS_DIR``) holds checkpoint files
under the names the libraries publish them under: torchvision's
``mobilenet_v2-b0353104.pth`` (the part after the last ``-`` is the first 8 hex digits of
the file's sha256, which is checked before the file is used) and, for timm's models, the
hub repository's name plus the file's extension (``res2net50_26w_4s.in1k.safetensors``;
no hash in the name, so only recorded). The folder is searched before the library's own
cache or download; ``cnnsweep weights fetch`` fills it on a machine with a network.

A model's ImageNet weights are named by a label: a torchvision model name
(``"mobilenet_v2"``) or ``"timm/<architecture>"``.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

WEIGHTS_DIR_ENV = "CNNSWEEP_WEIGHTS_DIR"
TIMM_EXTENSIONS = (".safetensors", ".bin", ".pth")
# torchvision's names: <anything>-<first 8+ hex digits of the sha256>.<ext>
HASHED_NAME = re.compile(r"-(?P<prefix>[0-9a-f]{8,64})\.(pth|pt|bin|safetensors)$")

# The folder searched during a model build (set by ``build_model`` around the builder).
_FOLDER: contextvars.ContextVar[Path | None] = contextvars.ContextVar("weights_dir", default=None)


class WeightsError(ValueError):
    """A weights file is missing, unreadable or not the file its name says."""


class WrongHash(WeightsError):
    """A weights file whose sha256 does not start with the prefix its name carries."""

    def __init__(self, path: Path, expected: str, actual: str) -> None:
        self.path, self.expected, self.actual = path, expected, actual
        super().__init__(
            f"weights file {path} is not the file its name says: expected a sha256 starting "
            f"{expected}, got {actual}; allowed: the library's own file (cnnsweep weights "
            "fetch), or a file renamed to its own hash"
        )


@dataclass(frozen=True)
class Found:
    """A weights file to load, checked: where it is and its sha256."""

    path: Path
    sha256: str
    checked: bool  # True: the name's hash prefix matched; False: the name carries none


def file_names(label: str) -> list[str]:
    """The file names the library publishes ``label``'s ImageNet weights under, the
    library's default first (torchvision: every ImageNet1K version of the model)."""
    if label.startswith("timm/"):
        from timm.models import get_pretrained_cfg

        cfg = get_pretrained_cfg(label.removeprefix("timm/"))
        repo = (cfg.hf_hub_id or label).split("/")[-1]
        return [f"{repo}{ext}" for ext in TIMM_EXTENSIONS]
    from torchvision.models import get_model_weights

    enum = get_model_weights(label)
    urls = [enum.DEFAULT.url, *(w.url for w in enum if w.url != enum.DEFAULT.url)]
    return [url.rsplit("/", 1)[-1] for url in dict.fromkeys(urls)]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_file(path: Path) -> Found:
    """The file's sha256, checked against the prefix its name carries (torchvision's
    convention); a file whose name carries none is recorded, not checked."""
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    digest = file_sha256(path)
    m = HASHED_NAME.search(path.name)
    if m and not digest.startswith(m["prefix"]):
        raise WrongHash(path, m["prefix"], digest)
    return Found(path, digest, bool(m))


def find(label: str, folder: Path | None) -> Found | None:
    """``label``'s weights file in ``folder``, checked; None when the folder has none."""
    if folder is None:
        return None
    for name in file_names(label):
        if (folder / name).is_file():
            return check_file(folder / name)
    return None


@contextlib.contextmanager
def searching(folder: str | Path | None) -> Iterator[None]:
    """Builders called inside look for ImageNet weights in ``folder`` first."""
    token = _FOLDER.set(Path(folder) if folder else None)
    try:
        yield
    finally:
        _FOLDER.reset(token)


def find_in_use(label: str) -> Found | None:
    """``label``'s file in the folder of the enclosing :func:`searching`, checked."""
    return find(label, _FOLDER.get())


@contextlib.contextmanager
def torchvision_reads(found: Found, label: str) -> Iterator[None]:
    """torchvision's own loading (``weights=...DEFAULT``) reads ``found`` and nothing else.

    torchvision asks torch.hub for ``<hub>/checkpoints/<DEFAULT's file name>`` and
    downloads it when missing. A private hub folder holding only that name, linked to
    the found file, makes it read the local file through its normal path (DenseNet's key
    renaming included). Every ImageNet version of a torchvision model fits the same
    architecture, so an older version's file (V1) may stand in for DEFAULT's name; the
    file actually read is what gets recorded.
    """
    import torch.hub

    wanted = file_names(label)[0]
    saved = torch.hub._hub_dir  # private, but restoring get_dir() would pin $TORCH_HOME
    with tempfile.TemporaryDirectory(prefix="cnnsweep-hub-") as hub:
        (Path(hub) / "checkpoints").mkdir()
        (Path(hub) / "checkpoints" / wanted).symlink_to(found.path.resolve())
        torch.hub.set_dir(hub)
        try:
            yield
        finally:
            torch.hub._hub_dir = saved


def cached(label: str) -> Path | None:
    """The library's own cached copy of ``label``'s default file (torch hub, or the
    Hugging Face cache for timm), without any network access; None when not cached."""
    if label.startswith("timm/"):
        from huggingface_hub import try_to_load_from_cache
        from timm.models import get_pretrained_cfg

        repo = get_pretrained_cfg(label.removeprefix("timm/")).hf_hub_id
        for name in ("model.safetensors", "pytorch_model.bin"):
            hit = try_to_load_from_cache(repo, name) if repo else None
            if isinstance(hit, str):
                return Path(hit)
        return None
    import torch.hub

    path = Path(torch.hub.get_dir()) / "checkpoints" / file_names(label)[0]
    return path if path.is_file() else None


def fetch(label: str, folder: Path) -> Path:
    """Download ``label``'s default weights into ``folder`` through the library's normal
    download (needs a network) and check them; the file's path."""
    folder.mkdir(parents=True, exist_ok=True)
    name = file_names(label)[0]
    if label.startswith("timm/"):
        from huggingface_hub import hf_hub_download
        from timm.models import get_pretrained_cfg

        repo = get_pretrained_cfg(label.removeprefix("timm/")).hf_hub_id
        with tempfile.TemporaryDirectory(prefix="cnnsweep-hf-") as cache:
            got = hf_hub_download(repo, "model.safetensors", cache_dir=cache)
            shutil.copyfile(got, folder / f"{name}.partial")
    else:
        from torch.hub import download_url_to_file
        from torchvision.models import get_model_weights

        url = get_model_weights(label).DEFAULT.url
        m = HASHED_NAME.search(name)
        download_url_to_file(
            url, str(folder / f"{name}.partial"), hash_prefix=m and m["prefix"], progress=True
        )
    target = folder / name
    (folder / f"{name}.partial").rename(target)  # the folder never holds a half-written file
    try:
        check_file(target)
    except WeightsError:
        target.unlink()
        raise
    return target


def availability(label: str, folder: Path | None) -> dict:
    """Where ``label``'s weights would come from now, without any network access: the
    file, its source (the weights folder, the library's cache, none) and its check."""
    try:
        found = find(label, folder)
    except WrongHash as exc:
        check = f"REFUSED: expected a sha256 starting {exc.expected}"
        return {
            "file": exc.path.name,
            "source": "weights dir",
            "sha256": exc.actual,
            "check": check,
        }
    if found is not None:
        check = "checked" if found.checked else "unchecked: no hash in the name"
        return {
            "file": found.path.name,
            "source": "weights dir",
            "sha256": found.sha256,
            "check": check,
        }
    hit = cached(label)
    if hit is not None:
        where = "hugging face cache" if label.startswith("timm/") else "torch hub cache"
        return {"file": hit.name, "source": where, "sha256": file_sha256(hit), "check": "unchecked"}
    return {
        "file": file_names(label)[0],
        "source": "none (download if online, else scratch)",
        "sha256": "",
        "check": "",
    }
