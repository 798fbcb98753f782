"""Image datasets for the vision models: MNIST, Fashion-MNIST, CIFAR-10 and ``.npz`` files.

Every loader returns an :class:`ImageDataset` holding ``uint8`` images shaped ``(N, C, H, W)`` and ``int64`` labels;
:class:`BatchLoader` turns it into shuffled float batches in ``[0, 1]`` on the training device.

Where the files are
    ``--data-dir DIR`` (the ``data_dir`` argument), else the ``RLGEN_DATA`` environment variable, else
    ``~/.cache/rlgen/data``. A dataset is looked for in ``DIR/<name>/`` and then in ``DIR`` itself, so both
    ``--data-dir ~/data`` (holding ``mnist/``, ``fashion-mnist/``, ``cifar10/``) and ``--data-dir ~/data/mnist`` work.

Formats
    * MNIST / Fashion-MNIST: the four official IDX files, gzipped (``*.gz``) or not.
    * CIFAR-10: the official *python* batches (``cifar-10-batches-py/data_batch_1..5``, ``test_batch``), or the
      official ``cifar-10-python.tar.gz`` (extracted on first use). The batches are pickles written by the dataset's
      authors; they are read with :class:`RestrictedUnpickler`, which only allows plain containers and numpy arrays
      (any other global, e.g. ``os.system``, is refused), never with ``pickle.load``.
    * The binarised MNIST of Larochelle & Murray (``binarized_mnist``): the official ``binarized_mnist_{train,valid,
      test}.amat`` text files, or ``binarized_mnist.npz`` holding the same arrays (``train``, ``valid``, ``test``);
      both are checked against the SHA-256s of the published files. No labels; pixels already 0/1.
    * ``.npz``: arrays ``x`` (and optionally ``y``), or ``x_train``/``y_train``/``x_test``/``y_test``. Images are
      ``(N, H, W)``, ``(N, C, H, W)`` or ``(N, H, W, C)`` with 1 or 3 channels, ``uint8`` or floats in ``[0, 1]``.

Checksums
    Official files are checked with MD5. For IDX files the check is on the *decompressed* content, so the official
    ``.gz``, an uncompressed copy and a re-compressed copy (Debian's ``dataset-fashion-mnist``) all pass; a download
    is also checked against the MD5 of the official archive. CIFAR-10 batches and archive have their official MD5s.
    ``.npz`` files have no official checksum: their shapes and value ranges are checked instead.

Download
    ``download=True`` fetches missing official files from the official URLs (MNIST: LeCun's site, then the PyTorch
    mirror; Fashion-MNIST: Zalando's bucket, then its GitHub repository; CIFAR-10: the University of Toronto), checks
    them and writes them atomically. Nothing is downloaded unless asked for.

Binarisation (for the likelihood models)
    ``binarize="static"``: each pixel is drawn once as Bernoulli(intensity) with a fixed seed and kept for every epoch
    (as in the fixed binarised MNIST of Salakhutdinov & Murray 2008). ``binarize="dynamic"``: a fresh Bernoulli draw for
    every batch (done by :class:`BatchLoader`). Binarised images are stored as 0/255 so ``x / 255`` is in {0, 1}.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import pickle
import shutil
import tarfile
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlgen.common.checkpoint import atomic_write
from rlgen.common.errors import UserError

log = logging.getLogger("rlgen")

DATA_ENV = "RLGEN_DATA"
SPLITS = ("train", "test")
BINARIZE_CHOICES = ("static", "dynamic")


# ----------------------------------------------------------------------------------------------------------------
# The official files


@dataclass(frozen=True)
class OfficialFile:
    """One official file: its name, the MD5 of the file as published, and for gzipped IDX files the MD5 of the
    decompressed content (``raw_md5``), which is what loading checks."""

    name: str
    md5: str
    raw_md5: str | None = None


@dataclass(frozen=True)
class Source:
    title: str
    subdir: str
    urls: tuple[str, ...]  # base URLs, tried in order
    files: dict[str, tuple[OfficialFile, ...]]  # split -> files (for IDX: images first, then labels)
    shape: tuple[int, int, int]


MNIST = Source(
    "MNIST", "mnist",
    ("http://yann.lecun.com/exdb/mnist/", "https://ossci-datasets.s3.amazonaws.com/mnist/"),
    {"train": (OfficialFile("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                            "6bbc9ace898e44ae57da46a324031adb"),
               OfficialFile("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432",
                            "a25bea736e30d166cdddb491f175f624")),
     "test": (OfficialFile("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3",
                           "2646ac647ad5339dbf082846283269ea"),
              OfficialFile("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c",
                           "27ae3e4e09519cfbb04c329615203637"))},
    (1, 28, 28))

FASHION_MNIST = Source(
    "Fashion-MNIST", "fashion-mnist",
    ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
     "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"),
    {"train": (OfficialFile("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                            "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
               OfficialFile("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe",
                            "9018921c3c673c538a1fc5bad174d6f9")),
     "test": (OfficialFile("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79",
                           "8181f5470baa50b63fa0f6fddb340f0a"),
              OfficialFile("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310",
                           "15d484375f8d13e6eb1aabb0c3f46965"))},
    (1, 28, 28))

CIFAR10_ARCHIVE = OfficialFile("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a")
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10 = Source(
    "CIFAR-10", "cifar10", ("https://www.cs.toronto.edu/~kriz/",),
    {"train": tuple(OfficialFile(f"data_batch_{i}", md5) for i, md5 in enumerate(
        ("c99cafc152244af753f735de768cd75f", "d4bba439e000b95fd0a9bffe97cbabec", "54ebc095f3ab1f0389bbae665268c751",
         "634d18415352ddfa80567beed471001a", "482c414d41f54cd18b22e5b47cb7c3cb"), start=1)),
     "test": (OfficialFile("test_batch", "40351d587109b95175f43aff81a1287e"),)},
    (3, 32, 32))

SOURCES: dict[str, Source] = {"mnist": MNIST, "fashion-mnist": FASHION_MNIST, "cifar10": CIFAR10}

# The fixed binarisation of MNIST of Larochelle & Murray (2011): 50,000 / 10,000 / 10,000 images with no labels,
# the "binarised MNIST" of the likelihood literature (PixelRNN's 79.20 nats). Published as text files of 784 digits
# separated by single spaces and a newline per image; their SHA-256s:
BINARIZED_MNIST = "binarized_mnist"
BINARIZED_MNIST_URLS = ("http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/",)
BINARIZED_MNIST_FILES = {
    "train": ("binarized_mnist_train.amat", 50000, "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d"),
    "valid": ("binarized_mnist_valid.amat", 10000, "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2"),
    "test": ("binarized_mnist_test.amat", 10000, "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c"),
}
BINARIZED_MNIST_NPZ = "binarized_mnist.npz"  # arrays train, valid, test: uint8 0/1 (N, 28, 28), as the .amat files

ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist", "cifar-10": "cifar10",
           "cifar_10": "cifar10", "binarized-mnist": BINARIZED_MNIST, "binarised_mnist": BINARIZED_MNIST,
           "binarised-mnist": BINARIZED_MNIST}
DATASET_NAMES = (*SOURCES, BINARIZED_MNIST)
BINARY_DATASETS = frozenset({BINARIZED_MNIST})  # pixels already 0 or 1: Bernoulli likelihoods, no binarisation


# ----------------------------------------------------------------------------------------------------------------
# The dataset object


@dataclass
class ImageDataset:
    """Images as ``uint8`` ``(N, C, H, W)`` (0..255) and optional ``int64`` labels ``(N,)``."""

    name: str
    images: np.ndarray
    labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[1] not in (1, 3):
            raise UserError(f"{self.name}: images must be uint8 (N, C, H, W) with C 1 or 3, got "
                            f"{self.images.dtype} {self.images.shape}")
        if self.labels is not None and self.labels.shape != (len(self.images),):
            raise UserError(f"{self.name}: {len(self.images)} images but labels shaped {self.labels.shape}")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int | None:
        return None if self.labels is None or len(self.labels) == 0 else int(self.labels.max()) + 1

    def take(self, n: int) -> ImageDataset:
        """The first ``n`` examples (for quick runs)."""
        return ImageDataset(self.name, self.images[:n], None if self.labels is None else self.labels[:n])


# ----------------------------------------------------------------------------------------------------------------
# Locating files


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """``data_dir`` if given, else ``$RLGEN_DATA``, else ``~/.cache/rlgen/data``."""
    if data_dir:
        return Path(data_dir).expanduser()
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rlgen" / "data"


def canonical_name(name: str) -> str:
    """``mnist``, ``fashion-mnist``, ``cifar10``, ``binarized_mnist``, or the ``.npz`` path unchanged."""
    if name.lower().endswith(".npz"):
        return name
    key = ALIASES.get(name.lower(), name.lower())
    if key not in DATASET_NAMES:
        raise UserError(f"unknown dataset {name!r}; use one of {', '.join(DATASET_NAMES)} or a path to an .npz file")
    return key


def _candidates(root: Path, source: Source) -> list[Path]:
    return [root / source.subdir, root]


def _find(dirs: Sequence[Path], name: str) -> Path | None:
    """``name`` or, for a ``.gz`` name, its uncompressed form (and vice versa), in the first dir that has it."""
    stem = name.removesuffix(".gz")
    for d in dirs:
        for candidate in (d / name, d / stem, d / f"{stem}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _missing_error(source: Source, split: str, dirs: Sequence[Path], names: Sequence[str], extra: str = "") -> UserError:
    where = " or ".join(str(d) for d in dirs)
    return UserError(f"{source.title} {split} data not found: expected {' and '.join(names)} in {where}{extra}; "
                     f"pass --download to fetch them from {source.urls[0]}, or point --data-dir (or {DATA_ENV}) "
                     "at the folder holding them")


# ----------------------------------------------------------------------------------------------------------------
# Checksums and downloads


def md5_of(path: str | os.PathLike | None = None, data: bytes | None = None) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    if data is not None:
        digest.update(data)
    else:
        with open(path, "rb") as f:  # type: ignore[arg-type]
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _check_md5(what: Path | str, actual: str, expected: str, algorithm: str = "MD5") -> None:
    if actual != expected:
        raise UserError(f"checksum mismatch for {what}: {algorithm} {actual}, expected {expected} (the file is damaged "
                        "or not the official one); delete it and fetch it again with --download, or pass "
                        "--no-verify-checksums to use it anyway")


def _fetch_one(url: str, dest: Path, md5: str, timeout: float, algorithm: str = "md5") -> None:
    """Stream ``url`` into a temporary file beside ``dest``, check its digest (``algorithm``: md5 or sha256), then
    move it onto ``dest``."""
    from tqdm import tqdm

    with urllib.request.urlopen(url, timeout=timeout) as response:
        total = int(response.headers.get("Content-Length") or 0) or None

        def write(tmp: str) -> None:
            digest = hashlib.new(algorithm, usedforsecurity=False)
            with open(tmp, "wb") as f, tqdm(total=total, unit="B", unit_scale=True, disable=None,
                                            desc=f"downloading {dest.name}", leave=False) as bar:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    f.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
            _check_md5(url, digest.hexdigest(), md5, algorithm.upper())  # raising here removes the temporary file

        atomic_write(dest, write)


def fetch(urls: Sequence[str], dest: Path, md5: str, timeout: float = 60.0, algorithm: str = "md5") -> Path:
    """Download the first of ``urls`` that answers to ``dest``, check its digest (MD5, or ``algorithm``) and move
    it into place atomically.

    A checksum mismatch is a :class:`UserError` (nothing is left at ``dest``); so is every URL failing."""
    errors: list[str] = []
    for url in urls:
        try:
            _fetch_one(url, dest, md5, timeout, algorithm)
        except (urllib.error.URLError, OSError, ValueError) as exc:  # HTTPError is a URLError
            errors.append(f"{url}: {getattr(exc, 'reason', None) or exc}")
            continue
        log.info("downloaded %s", url)
        return dest
    raise UserError(f"could not download {dest.name} ({'; '.join(errors)}); check the network, or download it by "
                    f"hand into {dest.parent}")


def download(name: str, data_dir: str | os.PathLike | None = None, urls: Sequence[str] | None = None,
             splits: Sequence[str] = SPLITS) -> Path:
    """Fetch the official files of ``name`` that are missing into ``<root>/<name>/`` and return that folder.

    ``urls`` replaces the official base URLs (a mirror; the tests use a local HTTP server)."""
    source = SOURCES[canonical_name(name)]
    folder = data_root(data_dir) / source.subdir
    bases = list(urls) if urls is not None else list(source.urls)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create data directory {folder} ({exc.strerror or exc}); pass a writable --data-dir") from exc
    if source is CIFAR10:
        if not all((folder / CIFAR10_FOLDER / f.name).is_file() for s in splits for f in source.files[s]):
            archive = folder / CIFAR10_ARCHIVE.name
            if not archive.is_file():
                fetch([b + CIFAR10_ARCHIVE.name for b in bases], archive, CIFAR10_ARCHIVE.md5)
            extract_cifar10(archive, folder)
        return folder
    for split in splits:
        for f in source.files[split]:
            if _find([folder], f.name) is None:
                fetch([b + f.name for b in bases], folder / f.name, f.md5)
    return folder


def extract_cifar10(archive: Path, folder: Path, verify: bool = True) -> Path:
    """Extract the batches of the official CIFAR-10 archive into ``folder/cifar-10-batches-py``.

    Only the expected regular files are written (no links, no other paths), so a crafted archive cannot write
    outside ``folder``."""
    if verify:
        _check_md5(archive, md5_of(archive), CIFAR10_ARCHIVE.md5)
    wanted = {f"{CIFAR10_FOLDER}/{f.name}" for s in SPLITS for f in CIFAR10.files[s]} | {f"{CIFAR10_FOLDER}/batches.meta"}
    out = folder / CIFAR10_FOLDER
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar.getmembers():
                if member.name in wanted and member.isfile():
                    src = tar.extractfile(member)
                    assert src is not None
                    atomic_write(out / Path(member.name).name, lambda tmp, src=src: _copy(src, tmp))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UserError(f"{archive} is not a readable CIFAR-10 archive ({exc}); delete it and download it again") from exc
    return out


def _copy(src: io.BufferedIOBase, tmp: str) -> None:
    with open(tmp, "wb") as f:
        shutil.copyfileobj(src, f)


# ----------------------------------------------------------------------------------------------------------------
# IDX (MNIST, Fashion-MNIST)

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"),
               0x0E: np.dtype(">f8")}


def read_idx_bytes(path: str | os.PathLike) -> bytes:
    """The content of an IDX file, decompressed if it is gzipped (detected from its first bytes, not its name)."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise UserError(f"{path} is a damaged gzip file ({exc}); delete it and fetch it again") from exc
    return raw


def parse_idx(data: bytes, what: str = "IDX data") -> np.ndarray:
    """Parse IDX bytes (magic ``00 00 <type> <ndim>``, big-endian dimensions, then the values)."""
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] not in _IDX_DTYPES:
        raise UserError(f"{what} is not an IDX file (bad magic number {data[:4].hex() or 'none'})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserError(f"{what} is truncated (header of {header} bytes, file of {len(data)})")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise UserError(f"{what} holds {len(data) - header} bytes of values but its header {shape} needs {expected}; "
                        "the file is truncated or damaged")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | os.PathLike, raw_md5: str | None = None) -> np.ndarray:
    """Read an IDX file (gzipped or not); ``raw_md5`` checks the decompressed content."""
    data = read_idx_bytes(path)
    if raw_md5 is not None:
        _check_md5(path, md5_of(data=data), raw_md5)
    return parse_idx(data, str(path))


def load_idx_dataset(name: str, split: str = "train", data_dir: str | os.PathLike | None = None,
                     download_missing: bool = False, verify: bool = True) -> ImageDataset:
    """MNIST or Fashion-MNIST (``name``) from its IDX files."""
    source = SOURCES[canonical_name(name)]
    _check_split(split)
    root = data_root(data_dir)
    dirs = _candidates(root, source)
    image_file, label_file = source.files[split]
    paths = [_find(dirs, f.name) for f in (image_file, label_file)]
    if None in paths and download_missing:
        download(name, root, splits=(split,))
        paths = [_find(dirs, f.name) for f in (image_file, label_file)]
    if None in paths:
        raise _missing_error(source, split, dirs, [f"{f.name[:-3]}[.gz]" for f in (image_file, label_file)])
    images = read_idx(paths[0], image_file.raw_md5 if verify else None)
    labels = read_idx(paths[1], label_file.raw_md5 if verify else None)
    _, h, w = source.shape
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (h, w):
        raise UserError(f"{paths[0]} holds {images.dtype} images shaped {images.shape}; {source.title} needs uint8 "
                        f"(N, {h}, {w})")
    if labels.ndim != 1 or len(labels) != len(images):
        raise UserError(f"{paths[1]} holds labels shaped {labels.shape} for {len(images)} images in {paths[0]}")
    return ImageDataset(source.subdir, images[:, None], labels.astype(np.int64))


# ----------------------------------------------------------------------------------------------------------------
# CIFAR-10 python batches


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: the globals a numpy array needs are allowed, every other
    global (functions, classes, ``os.system``...) raises :class:`pickle.UnpicklingError`."""

    # numpy arrays pickle as _reconstruct(ndarray, shape, dtype) + state (protocol <= 4) or _frombuffer (protocol 5);
    # numpy 2 moved numpy.core to numpy._core, and the 2009 batches name the old module. Python 3 writes bytes in
    # protocol 2 as _codecs.encode(text, "latin1").
    ALLOWED = frozenset({("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")})

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a dataset file")
        if module == "numpy":
            return getattr(np, name)
        if module == "_codecs":
            import codecs

            return codecs.encode
        return _numpy_attr(module.rsplit(".", 1)[1], name)


def _numpy_attr(module: str, name: str) -> Any:
    import importlib

    for prefix in ("numpy._core", "numpy.core"):
        try:
            return getattr(importlib.import_module(f"{prefix}.{module}"), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"numpy has no {module}.{name}")


def read_cifar10_batch(path: str | os.PathLike, md5: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch: images ``uint8 (N, 3, 32, 32)`` and labels ``int64 (N,)``."""
    raw = Path(path).read_bytes()
    if md5 is not None:
        _check_md5(path, md5_of(data=raw), md5)
    try:
        batch = RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise UserError(f"{path} is not a CIFAR-10 python batch ({exc})") from exc
    if not isinstance(batch, dict):
        raise UserError(f"{path} is not a CIFAR-10 python batch (holds a {type(batch).__name__}, not a dict)")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise UserError(f"{path}: 'data' must be uint8 (N, 3072), got "
                        f"{getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}")
    labels = np.asarray(labels if labels is not None else [], dtype=np.int64)
    if labels.shape != (len(data),):
        raise UserError(f"{path}: {len(data)} images but {labels.shape} labels")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(split: str = "train", data_dir: str | os.PathLike | None = None, download_missing: bool = False,
                 verify: bool = True) -> ImageDataset:
    """CIFAR-10 from its official python batches (extracting ``cifar-10-python.tar.gz`` when only that is there)."""
    _check_split(split)
    root = data_root(data_dir)
    files = CIFAR10.files[split]
    dirs = [root / "cifar10" / CIFAR10_FOLDER, root / CIFAR10_FOLDER, root / "cifar10", root]

    def locate() -> Path | None:
        return next((d for d in dirs if all((d / f.name).is_file() for f in files)), None)

    folder = locate()
    if folder is None:
        archive = next((p for p in (root / "cifar10" / CIFAR10_ARCHIVE.name, root / CIFAR10_ARCHIVE.name) if p.is_file()),
                       None)
        if archive is not None:
            extract_cifar10(archive, archive.parent, verify=verify)
        elif download_missing:
            download("cifar10", root, splits=(split,))
        folder = locate()
    if folder is None:
        raise _missing_error(CIFAR10, split, dirs[:2], [f.name for f in files],
                             f" (or {CIFAR10_ARCHIVE.name} in {root / 'cifar10'} or {root})")
    parts = [read_cifar10_batch(folder / f.name, f.md5 if verify else None) for f in files]
    return ImageDataset("cifar10", np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))


# ----------------------------------------------------------------------------------------------------------------
# Binarised MNIST (Larochelle & Murray 2011)


def amat_text(bits: np.ndarray) -> bytes:
    """The ``.amat`` text of binary images ``(N, 28, 28)``: per image 784 digits separated by single spaces, then a
    newline (what the published files hold byte for byte, so their SHA-256 checks arrays too)."""
    flat = bits.reshape(len(bits), -1).astype(np.uint8)
    text = np.empty((len(flat), 2 * flat.shape[1]), dtype=np.uint8)
    text[:, 0::2] = flat + ord("0")
    text[:, 1::2] = ord(" ")
    text[:, -1] = ord("\n")
    return text.tobytes()


def parse_amat(raw: bytes, what: str) -> np.ndarray:
    """Binary images ``uint8 (N, 28, 28)`` from ``.amat`` text (any whitespace between the 0/1 values)."""
    codes = np.frombuffer(raw, dtype=np.uint8)
    if len(codes) % (2 * 784) == 0 and len(codes):  # the published layout: one vectorised pass
        text = codes.reshape(-1, 2 * 784)
        separators = text[:, 1::2]
        if (separators[:, :-1] == ord(" ")).all() and (separators[:, -1] == ord("\n")).all() \
                and np.isin(text[:, 0::2], (ord("0"), ord("1"))).all():
            return (text[:, 0::2] - ord("0")).reshape(-1, 28, 28)
    lines = raw.split(b"\n")
    rows = [line.split() for line in lines if line.strip()]
    if not rows or any(len(r) != 784 for r in rows):
        raise UserError(f"{what} is not a binarised-MNIST .amat file: every line must hold 784 values")
    values = np.array(rows, dtype=np.bytes_)
    if not np.isin(values, (b"0", b"1")).all():
        raise UserError(f"{what} is not a binarised-MNIST .amat file: values must be 0 or 1")
    return (values == b"1").astype(np.uint8).reshape(-1, 28, 28)


def _binarized_mnist_split(split: str, dirs: Sequence[Path], verify: bool) -> np.ndarray | None:
    """One split from its ``.amat`` file or from ``binarized_mnist.npz`` (None when neither is in ``dirs``)."""
    name, count, sha256 = BINARIZED_MNIST_FILES[split]
    amat = next((d / name for d in dirs if (d / name).is_file()), None)
    if amat is not None:
        raw = amat.read_bytes()
        if verify:
            _check_md5(amat, hashlib.sha256(raw).hexdigest(), sha256, "SHA-256")
        bits = parse_amat(raw, str(amat))
        where = amat
    else:
        npz = next((d / BINARIZED_MNIST_NPZ for d in dirs if (d / BINARIZED_MNIST_NPZ).is_file()), None)
        if npz is None:
            return None
        try:
            with np.load(npz, allow_pickle=False) as arrays:
                if split not in arrays.files:
                    raise UserError(f"{npz} has no array {split!r}; it must hold train, valid and test")
                bits = np.asarray(arrays[split])
        except (OSError, ValueError, EOFError) as exc:
            raise unreadable_npz(npz, exc) from exc
        if bits.ndim != 3 or bits.shape[1:] != (28, 28) or not np.isin(bits, (0, 1)).all():
            raise UserError(f"{npz}[{split}] must be 0/1 images shaped (N, 28, 28), got {bits.dtype} {bits.shape}")
        if verify:  # the arrays must be the published files: the SHA-256 of their text
            _check_md5(f"{npz}[{split}]", hashlib.sha256(amat_text(bits)).hexdigest(), sha256, "SHA-256 (of its .amat text)")
        where = npz
    if verify and len(bits) != count:
        raise UserError(f"{where} holds {len(bits)} {split} images; the binarised MNIST has {count}")
    return bits.astype(np.uint8)


def load_binarized_mnist(split: str = "train", data_dir: str | os.PathLike | None = None,
                         download_missing: bool = False, verify: bool = True) -> ImageDataset:
    """The fixed binarised MNIST: ``split`` is ``train``, ``valid``, ``test`` or ``train+valid`` (the papers' final
    models train on both). Read from the official ``binarized_mnist_<split>.amat`` files or from
    ``binarized_mnist.npz`` (arrays ``train``, ``valid``, ``test``) in ``<data dir>/binarized_mnist/`` or the data
    dir itself, checked against the published SHA-256s; images are stored as 0/255 like every binarised dataset."""
    parts = split.split("+")
    if not parts or any(p not in BINARIZED_MNIST_FILES for p in parts):
        raise UserError(f"unknown split {split!r} of the binarised MNIST; use train, valid, test or train+valid")
    root = data_root(data_dir)
    dirs = [root / BINARIZED_MNIST, root]
    images = []
    for part in parts:
        bits = _binarized_mnist_split(part, dirs, verify)
        if bits is None and download_missing:
            name, _, sha256 = BINARIZED_MNIST_FILES[part]
            try:
                dirs[0].mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UserError(f"cannot create data directory {dirs[0]} ({exc.strerror or exc}); pass a writable "
                                "--data-dir") from exc
            fetch([base + name for base in BINARIZED_MNIST_URLS], dirs[0] / name, sha256, algorithm="sha256")
            bits = _binarized_mnist_split(part, dirs, verify)
        if bits is None:
            name = BINARIZED_MNIST_FILES[part][0]
            raise UserError(f"binarised MNIST {part} data not found: expected {name} or {BINARIZED_MNIST_NPZ} in "
                            f"{' or '.join(str(d) for d in dirs)}; pass --download to fetch the .amat files from "
                            f"{BINARIZED_MNIST_URLS[0]}, or point --data-dir (or {DATA_ENV}) at the folder holding them")
        images.append(bits)
    return ImageDataset(BINARIZED_MNIST, np.concatenate(images)[:, None] * np.uint8(255))


# ----------------------------------------------------------------------------------------------------------------
# npz


def load_npz(path: str | os.PathLike, split: str = "train", data_dir: str | os.PathLike | None = None) -> ImageDataset:
    """Images (and labels) from an ``.npz`` file: keys ``x``/``y`` (one split, used as ``train``) or
    ``x_train``/``y_train``/``x_test``/``y_test``. A relative path is looked for in the working directory and
    then in the data directory."""
    _check_split(split)
    path = Path(path).expanduser()
    if not path.is_file() and not path.is_absolute() and (data_root(data_dir) / path).is_file():
        path = data_root(data_dir) / path
    if not path.is_file():
        raise UserError(f"npz dataset {path} not found (looked in the working directory and {data_root(data_dir)}); "
                        "it must hold arrays x and y, or x_train, y_train, x_test, y_test")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError) as exc:
        raise unreadable_npz(path, exc) from exc
    x_key = f"x_{split}" if f"x_{split}" in arrays else ("x" if split == "train" and "x" in arrays else None)
    if x_key is None:
        raise UserError(f"{path} has no {split} images: expected array x_{split}"
                        f"{' or x' if split == 'train' else ''}; it holds {', '.join(sorted(arrays)) or 'nothing'}")
    y_key = x_key.replace("x", "y", 1)
    images = to_uint8_nchw(arrays[x_key], f"{path}[{x_key}]")
    labels = None
    if y_key in arrays:
        labels = np.asarray(arrays[y_key])
        if labels.ndim != 1 or len(labels) != len(images) or not np.issubdtype(labels.dtype, np.integer):
            raise UserError(f"{path}[{y_key}] must be integer labels shaped ({len(images)},), got "
                            f"{labels.dtype} {labels.shape}")
        labels = labels.astype(np.int64)
    return ImageDataset(path.stem, images, labels)


def to_uint8_nchw(x: np.ndarray, what: str = "images") -> np.ndarray:
    """``(N, H, W)``, ``(N, C, H, W)`` or ``(N, H, W, C)`` (C 1 or 3), uint8 or floats in [0, 1] -> uint8 NCHW."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[1] not in (1, 3) and x.shape[3] in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    if x.ndim != 4 or x.shape[1] not in (1, 3) or x.shape[0] == 0:
        raise UserError(f"{what} must be non-empty images shaped (N, H, W), (N, C, H, W) or (N, H, W, C) with 1 or 3 "
                        f"channels, got {x.shape}")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if np.issubdtype(x.dtype, np.floating):
        if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
            raise UserError(f"{what} are floats outside [0, 1]; store uint8 0..255 or floats in [0, 1]")
        return np.ascontiguousarray(np.round(x * 255).astype(np.uint8))
    raise UserError(f"{what} have dtype {x.dtype}; store uint8 0..255 or floats in [0, 1]")


# ----------------------------------------------------------------------------------------------------------------
# One entry point


def dataset_splits(name: str) -> tuple[str, ...]:
    """The splits ``load_dataset`` takes for the dataset ``name`` (canonical)."""
    return ("train", "valid", "test", "train+valid") if name == BINARIZED_MNIST else SPLITS


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")


def load_dataset(name: str, split: str = "train", data_dir: str | os.PathLike | None = None, download: bool = False,
                 verify: bool = True, binarize: str | None = None, seed: int = 0) -> ImageDataset:
    """Load ``name`` (``mnist``, ``fashion-mnist``, ``cifar10``, ``binarized_mnist`` or a path to an ``.npz`` file):
    ``split`` is ``train`` or ``test`` (the binarised MNIST also has ``valid`` and ``train+valid``).

    ``download``: fetch missing official files. ``verify``: check official checksums. ``binarize="static"``
    binarises once with ``seed``; ``"dynamic"`` is applied per batch by :class:`BatchLoader` (the dataset is
    returned unchanged)."""
    key = canonical_name(name)
    if key == BINARIZED_MNIST:
        data = load_binarized_mnist(split, data_dir, download, verify)
    elif key.endswith(".npz"):
        data = load_npz(key, split, data_dir)
    elif key == "cifar10":
        data = load_cifar10(split, data_dir, download, verify)
    else:
        data = load_idx_dataset(key, split, data_dir, download, verify)
    if binarize not in (None, "none", *BINARIZE_CHOICES):
        raise UserError(f"unknown binarisation {binarize!r}; use one of {', '.join(BINARIZE_CHOICES)} or none")
    if binarize == "static" and key not in BINARY_DATASETS:
        data = static_binarize(data, seed)
    return data


def static_binarize(data: ImageDataset, seed: int = 0) -> ImageDataset:
    """Each pixel drawn once as Bernoulli(intensity / 255) with ``seed``, stored as 0/255."""
    rng = np.random.default_rng(seed)
    bits = rng.random(data.images.shape, dtype=np.float32) * 255.0 < data.images
    return ImageDataset(data.name, bits.astype(np.uint8) * 255, data.labels)


def dynamic_binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A fresh Bernoulli draw of a float batch in [0, 1] (values stay floats 0.0/1.0)."""
    return torch.bernoulli(x, generator=generator)


# ----------------------------------------------------------------------------------------------------------------
# Batches


@dataclass
class Batch:
    """A training batch: ``x`` float32 ``(N, C, H, W)`` in [0, 1] on the device, ``y`` int64 labels or None."""

    x: torch.Tensor
    y: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.x.shape[0]


def unreadable_npz(path: str | Path, exc: BaseException) -> UserError:
    """The error for an .npz that ``np.load(..., allow_pickle=False)`` refused: without numpy's advice to load it
    unsafely."""
    try:
        with open(path, "rb") as f:
            is_zip = f.read(4) == b"PK\x03\x04"
    except OSError:
        is_zip = False
    why = ("not a zip archive of numpy arrays" if not is_zip else
           "it holds Python objects, which rlgen does not unpickle" if "allow_pickle" in str(exc) else
           f"a damaged archive: {type(exc).__name__}")
    return UserError(f"{path} is not a readable .npz file ({why}); write it with numpy.savez of numeric arrays")


def check_batch_size(data: ImageDataset, batch_size: int, whole_batches: bool = True) -> None:
    """A positive batch size, and (training on whole batches only) at least one batch in ``data``."""
    if batch_size <= 0:
        raise UserError(f"batch size must be positive, got {batch_size}")
    if whole_batches and len(data) < batch_size:
        raise UserError(f"{data.name} has {len(data)} images, fewer than one batch of {batch_size}; "
                        "lower --batch-size")


class BatchLoader:
    """Shuffled batches of an :class:`ImageDataset`, vectorised: the whole dataset sits on ``device`` as uint8 and a
    batch is one index operation. Epoch ``e`` is shuffled with seed ``(seed, e)``, so a resumed run sees the same
    order as an uninterrupted one without saving any loader state."""

    def __init__(self, data: ImageDataset, batch_size: int, device: torch.device | str = "cpu", shuffle: bool = True,
                 drop_last: bool = True, binarize: str | None = None, seed: int = 0):
        check_batch_size(data, batch_size, whole_batches=drop_last)
        self.device = torch.device(device)
        self.images = torch.from_numpy(data.images).to(self.device)
        self.labels = None if data.labels is None else torch.from_numpy(data.labels).to(self.device)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.dynamic = binarize == "dynamic"
        self.seed = seed

    def __len__(self) -> int:
        n = len(self.images)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def epoch(self, epoch: int = 0, start: int = 0) -> Iterator[Batch]:
        """The batches of epoch ``epoch`` from batch ``start`` on (a run resumed mid-epoch), each exactly as an
        uninterrupted epoch draws it."""
        n = len(self.images)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = (torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)).to(self.device)
        noise = None
        if self.dynamic:
            noise = torch.Generator(device=self.device).manual_seed(self.seed * 1_000_003 + epoch + 1)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            x = self.images[idx].float().div_(255.0)
            if noise is not None:  # drawn for skipped batches too, so later batches get their usual draws
                x = dynamic_binarize(x, noise)
            if i >= start:
                yield Batch(x, None if self.labels is None else self.labels[idx])

    def __iter__(self) -> Iterator[Batch]:
        return self.epoch(0)
