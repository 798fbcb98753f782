"""Datasets: IDX/CIFAR/npz loading, shape and checksum checks, missing-data errors, downloads from a local HTTP
server (never the internet), binarisation and batching. All data is made by the tests."""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import http.server
import io
import os
import pickle
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from rlgen.common.errors import UserError
from rlgen.vision import datasets as ds

torch.set_num_threads(1)


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array (what the MNIST files hold)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = b"\x00\x00\x08" + bytes([array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    data = idx_bytes(array)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def tiny_mnist(n: int = 20, seed: int = 0, size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8)


def write_mnist(folder: Path, split: str = "train", n: int = 20, gz: bool = False, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    x, y = tiny_mnist(n, seed)
    prefix = "train" if split == "train" else "t10k"
    suffix = ".gz" if gz else ""
    write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", x, gz)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", y, gz)
    return x, y


def trust(monkeypatch: pytest.MonkeyPatch, name: str, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    """Make the test's files the 'official' ones: their MD5s go into the checksum table."""
    source = ds.SOURCES[name]
    img_file, lab_file = source.files[split]
    files = dict(source.files)
    files[split] = tuple(dataclasses.replace(f, md5=md5(gzip.compress(idx_bytes(a), mtime=0)), raw_md5=md5(idx_bytes(a)))
                         for f, a in ((img_file, images), (lab_file, labels)))
    monkeypatch.setitem(ds.SOURCES, name, dataclasses.replace(source, files=files))


# ------------------------------------------------------------------------------------------------------------------
# IDX


@pytest.mark.parametrize("gz", [False, True])
def test_idx_loads_gzipped_or_not(tmp_path, gz):
    x, y = write_mnist(tmp_path / "mnist", gz=gz)
    data = ds.load_dataset("mnist", data_dir=tmp_path, verify=False)
    assert data.images.shape == (20, 1, 28, 28) and data.images.dtype == np.uint8
    np.testing.assert_array_equal(data.images[:, 0], x)
    np.testing.assert_array_equal(data.labels, y.astype(np.int64))
    assert data.labels.dtype == np.int64 and data.name == "mnist"
    # The folder itself may be the data dir, and Fashion-MNIST reads the same format.
    assert len(ds.load_dataset("mnist", data_dir=tmp_path / "mnist", verify=False)) == 20
    write_mnist(tmp_path / "fashion-mnist", "test", n=7)
    assert ds.load_dataset("fashion-mnist", "test", data_dir=tmp_path, verify=False).images.shape == (7, 1, 28, 28)


def test_idx_rejects_wrong_shapes_and_damaged_files(tmp_path):
    folder = tmp_path / "mnist"
    write_idx(folder / "train-images-idx3-ubyte", np.zeros((5, 27, 27), np.uint8))
    write_idx(folder / "train-labels-idx1-ubyte", np.zeros(5, np.uint8))
    with pytest.raises(UserError, match=r"\(5, 27, 27\).*\(N, 28, 28\)"):
        ds.load_dataset("mnist", data_dir=tmp_path, verify=False)

    write_idx(folder / "train-images-idx3-ubyte", np.zeros((5, 28, 28), np.uint8))
    write_idx(folder / "train-labels-idx1-ubyte", np.zeros(4, np.uint8))
    with pytest.raises(UserError, match="labels shaped"):
        ds.load_dataset("mnist", data_dir=tmp_path, verify=False)

    good = idx_bytes(np.zeros((5, 28, 28), np.uint8))
    (folder / "train-images-idx3-ubyte").write_bytes(good[:-10])
    with pytest.raises(UserError, match="truncated"):
        ds.load_dataset("mnist", data_dir=tmp_path, verify=False)
    (folder / "train-images-idx3-ubyte").write_bytes(b"PK\x03\x04" + good[4:])
    with pytest.raises(UserError, match="magic"):
        ds.load_dataset("mnist", data_dir=tmp_path, verify=False)
    (folder / "train-images-idx3-ubyte").write_bytes(gzip.compress(good)[:-20])
    with pytest.raises(UserError, match="gzip"):
        ds.load_dataset("mnist", data_dir=tmp_path, verify=False)


def test_idx_checksums_are_checked_on_the_decompressed_content(tmp_path, monkeypatch):
    x, y = write_mnist(tmp_path / "mnist", gz=True)
    # Not the official files: rejected, naming the file and both checksums.
    with pytest.raises(UserError, match=r"checksum mismatch for .*train-images-idx3-ubyte\.gz.*6bbc9ace"):
        ds.load_dataset("mnist", data_dir=tmp_path)
    trust(monkeypatch, "mnist", "train", x, y)
    assert len(ds.load_dataset("mnist", data_dir=tmp_path)) == 20
    # Re-compressed (different .gz bytes) or uncompressed copies of the same content pass.
    for path in (tmp_path / "mnist").iterdir():
        path.with_suffix("").write_bytes(gzip.decompress(path.read_bytes()))
        path.unlink()
    assert len(ds.load_dataset("mnist", data_dir=tmp_path)) == 20
    # One changed pixel is caught.
    raw = bytearray((tmp_path / "mnist" / "train-images-idx3-ubyte").read_bytes())
    raw[-1] ^= 0xFF
    (tmp_path / "mnist" / "train-images-idx3-ubyte").write_bytes(bytes(raw))
    with pytest.raises(UserError, match="checksum mismatch"):
        ds.load_dataset("mnist", data_dir=tmp_path)


def test_missing_data_names_the_expected_files(tmp_path, monkeypatch):
    monkeypatch.delenv(ds.DATA_ENV, raising=False)
    with pytest.raises(UserError) as err:
        ds.load_dataset("mnist", data_dir=tmp_path)
    msg = str(err.value)
    for word in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", str(tmp_path), "--download", "--data-dir"):
        assert word in msg
    with pytest.raises(UserError, match="test_batch"):
        ds.load_dataset("cifar10", "test", data_dir=tmp_path)
    with pytest.raises(UserError, match="unknown dataset"):
        ds.load_dataset("imagenet", data_dir=tmp_path)


def test_data_dir_comes_from_flag_then_environment(tmp_path, monkeypatch):
    write_mnist(tmp_path / "env" / "mnist", n=3)
    monkeypatch.setenv(ds.DATA_ENV, str(tmp_path / "env"))
    assert ds.data_root() == tmp_path / "env"
    assert len(ds.load_dataset("mnist", verify=False)) == 3
    assert ds.data_root(tmp_path / "flag") == tmp_path / "flag"
    monkeypatch.delenv(ds.DATA_ENV)
    assert ds.data_root().parts[-2:] == ("rlgen", "data")


# ------------------------------------------------------------------------------------------------------------------
# Downloads from a local HTTP server


@pytest.fixture
def http_server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # keep the test output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_download_checks_checksums_and_falls_back_to_mirrors(tmp_path, monkeypatch, http_server):
    served, url = http_server
    x, y = tiny_mnist(12)
    for name, array in (("train-images-idx3-ubyte.gz", x), ("train-labels-idx1-ubyte.gz", y)):
        (served / name).write_bytes(gzip.compress(idx_bytes(array), mtime=0))
    trust(monkeypatch, "mnist", "train", x, y)
    data_dir = tmp_path / "data"
    dead = url + "missing/"  # answers 404: the next URL is tried
    folder = ds.download("mnist", data_dir, urls=[dead, url], splits=("train",))
    assert folder == data_dir / "mnist"
    assert sorted(p.name for p in folder.iterdir()) == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    data = ds.load_dataset("mnist", data_dir=data_dir)
    np.testing.assert_array_equal(data.images[:, 0], x)

    # A served file that does not match its checksum is refused and nothing is left behind.
    (served / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(y[::-1]), mtime=0))
    other = tmp_path / "other"
    with pytest.raises(UserError, match="checksum mismatch"):
        ds.download("mnist", other, urls=[url], splits=("train",))
    assert not (other / "mnist" / "train-labels-idx1-ubyte.gz").exists()
    assert not [p for p in (other / "mnist").iterdir() if p.name.endswith(".tmp")]

    # No server answering: a UserError naming the file.
    with pytest.raises(UserError, match="could not download train-images-idx3-ubyte.gz"):
        ds.download("mnist", tmp_path / "third", urls=[dead], splits=("train",))


def test_load_dataset_download_flag_uses_the_sources_urls(tmp_path, monkeypatch, http_server):
    served, url = http_server
    x, y = tiny_mnist(6)
    for name, array in (("t10k-images-idx3-ubyte.gz", x), ("t10k-labels-idx1-ubyte.gz", y)):
        (served / name).write_bytes(gzip.compress(idx_bytes(array), mtime=0))
    trust(monkeypatch, "fashion-mnist", "test", x, y)
    monkeypatch.setitem(ds.SOURCES, "fashion-mnist", dataclasses.replace(ds.SOURCES["fashion-mnist"], urls=(url,)))
    with pytest.raises(UserError, match="not found"):
        ds.load_dataset("fashion-mnist", "test", data_dir=tmp_path)
    data = ds.load_dataset("fashion-mnist", "test", data_dir=tmp_path, download=True)
    assert data.images.shape == (6, 1, 28, 28)


# ------------------------------------------------------------------------------------------------------------------
# CIFAR-10


def cifar_batch(n: int, seed: int) -> tuple[bytes, np.ndarray, np.ndarray]:
    """A batch in the official layout: a protocol-2 pickle of a dict with bytes keys (as Python 2 wrote it)."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, n)]
    blob = pickle.dumps({b"batch_label": b"test", b"data": data, b"labels": labels,
                         b"filenames": [b"x.png"] * n}, protocol=2)
    return blob, data.reshape(n, 3, 32, 32), np.array(labels)


def write_cifar(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    folder.mkdir(parents=True, exist_ok=True)
    parts = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        blob, x, y = cifar_batch(3 + i, i)
        (folder / name).write_bytes(blob)
        parts[name] = (x, y)
    return parts


def test_cifar10_batches_load_with_the_restricted_unpickler(tmp_path):
    parts = write_cifar(tmp_path / "cifar10" / "cifar-10-batches-py")
    train = ds.load_dataset("cifar10", data_dir=tmp_path, verify=False)
    assert train.images.shape == (3 + 4 + 5 + 6 + 7, 3, 32, 32)
    np.testing.assert_array_equal(train.images[:3], parts["data_batch_1"][0])
    np.testing.assert_array_equal(train.labels[-7:], parts["data_batch_5"][1])
    test = ds.load_dataset("cifar10", "test", data_dir=tmp_path, verify=False)
    np.testing.assert_array_equal(test.images, parts["test_batch"][0])
    with pytest.raises(UserError, match="checksum mismatch for .*data_batch_1.*c99cafc1"):
        ds.load_dataset("cifar10", data_dir=tmp_path)


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_cifar10_unpickler_refuses_code_and_bad_shapes(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}, protocol=2))
    with pytest.raises(UserError, match="not allowed"):
        ds.load_dataset("cifar10", "test", data_dir=tmp_path, verify=False)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]},
                                                     protocol=2))
    with pytest.raises(UserError, match=r"\(N, 3072\)"):
        ds.load_dataset("cifar10", "test", data_dir=tmp_path, verify=False)
    # numpy's protocol-5 form (_frombuffer) is allowed too.
    (folder / "test_batch").write_bytes(pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1]},
                                                     protocol=5))
    assert ds.load_dataset("cifar10", "test", data_dir=tmp_path, verify=False).images.shape == (2, 3, 32, 32)


def test_cifar10_archive_is_extracted_safely(tmp_path):
    src = tmp_path / "src" / "cifar-10-batches-py"
    parts = write_cifar(src)
    archive = tmp_path / "data" / "cifar10" / "cifar-10-python.tar.gz"
    archive.parent.mkdir(parents=True)
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="cifar-10-batches-py")
        evil = tarfile.TarInfo("../../escaped.txt")
        evil.size = 4
        tar.addfile(evil, io.BytesIO(b"evil"))
    with pytest.raises(UserError, match="checksum mismatch"):
        ds.load_dataset("cifar10", data_dir=tmp_path / "data")
    data = ds.load_dataset("cifar10", "test", data_dir=tmp_path / "data", verify=False)
    np.testing.assert_array_equal(data.images, parts["test_batch"][0])
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "data" / "escaped.txt").exists()


# ------------------------------------------------------------------------------------------------------------------
# npz


def test_npz_layouts(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "plain.npz", x=x, y=np.arange(6))
    data = ds.load_dataset(str(tmp_path / "plain.npz"))
    assert data.images.shape == (6, 1, 28, 28) and data.name == "plain" and list(data.labels) == list(range(6))

    rgb = rng.random((4, 32, 32, 3)).astype(np.float32)  # NHWC floats in [0, 1]
    np.savez(tmp_path / "split.npz", x_train=rgb, y_train=np.zeros(4, np.int64), x_test=rgb[:2])
    train = ds.load_dataset("split.npz", data_dir=tmp_path)  # relative: found in the data dir
    assert train.images.shape == (4, 3, 32, 32) and train.images.dtype == np.uint8
    np.testing.assert_array_equal(train.images, np.round(rgb.transpose(0, 3, 1, 2) * 255).astype(np.uint8))
    test = ds.load_dataset(str(tmp_path / "split.npz"), "test")
    assert test.images.shape == (2, 3, 32, 32) and test.labels is None


@pytest.mark.parametrize("arrays,message", [
    ({"x": np.zeros((4, 784), np.uint8)}, "shaped"),
    ({"x": np.zeros((4, 2, 28, 28), np.uint8)}, "1 or 3 channels"),
    ({"x": np.full((4, 28, 28), 2.0)}, "outside"),
    ({"x": np.zeros((4, 28, 28), np.int32)}, "dtype"),
    ({"x": np.zeros((4, 28, 28), np.uint8), "y": np.zeros(3, np.int64)}, "labels"),
    ({"images": np.zeros((4, 28, 28), np.uint8)}, "x_train"),
])
def test_npz_rejects_wrong_shapes(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(UserError, match=message):
        ds.load_dataset(str(tmp_path / "bad.npz"))


def test_npz_missing_file_and_split(tmp_path):
    with pytest.raises(UserError, match="nothere.npz not found"):
        ds.load_dataset(str(tmp_path / "nothere.npz"))
    np.savez(tmp_path / "only.npz", x=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(UserError, match="no test images"):
        ds.load_dataset(str(tmp_path / "only.npz"), "test")


# ------------------------------------------------------------------------------------------------------------------
# Binarisation and batches


def test_static_binarisation_is_fixed_and_unbiased(tmp_path):
    x = np.full((200, 28, 28), 64, np.uint8)
    np.savez(tmp_path / "grey.npz", x=x)
    a = ds.load_dataset(str(tmp_path / "grey.npz"), binarize="static", seed=3)
    b = ds.load_dataset(str(tmp_path / "grey.npz"), binarize="static", seed=3)
    c = ds.load_dataset(str(tmp_path / "grey.npz"), binarize="static", seed=4)
    assert set(np.unique(a.images)) == {0, 255}
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(a.images, c.images)
    assert abs(a.images.mean() / 255 - 64 / 255) < 0.01
    with pytest.raises(UserError, match="binarisation"):
        ds.load_dataset(str(tmp_path / "grey.npz"), binarize="threshold")


def test_dynamic_binarisation_draws_each_epoch():
    data = ds.ImageDataset("grey", np.full((256, 1, 28, 28), 191, np.uint8))
    loader = ds.BatchLoader(data, 64, binarize="dynamic", seed=0)
    first = torch.cat([b.x for b in loader.epoch(0)])
    second = torch.cat([b.x for b in loader.epoch(1)])
    assert set(first.unique().tolist()) == {0.0, 1.0}
    assert abs(first.mean().item() - 191 / 255) < 0.01
    assert not torch.equal(first, second)
    assert torch.equal(first, torch.cat([b.x for b in loader.epoch(0)]))  # same epoch, same draw (resumable)


def test_batches_cover_the_data_once_per_epoch_in_a_seeded_order():
    images = np.arange(10, dtype=np.uint8).repeat(28 * 28).reshape(10, 1, 28, 28)
    data = ds.ImageDataset("ids", images, np.arange(10))
    loader = ds.BatchLoader(data, 3, seed=1)
    assert len(loader) == 3  # the last, incomplete batch is dropped
    batches = list(loader.epoch(0))
    assert all(b.x.shape == (3, 1, 28, 28) and b.x.dtype == torch.float32 for b in batches)
    ids = torch.cat([b.y for b in batches])
    assert len(set(ids.tolist())) == 9
    assert torch.allclose(torch.cat([b.x[:, 0, 0, 0] for b in batches]) * 255, ids.float())
    assert torch.equal(ids, torch.cat([b.y for b in loader.epoch(0)]))
    assert not torch.equal(ids, torch.cat([b.y for b in loader.epoch(1)]))
    assert len(ds.BatchLoader(data, 3, shuffle=False, drop_last=False)) == 4
    with pytest.raises(UserError, match="fewer than one batch"):
        ds.BatchLoader(data, 64)


# ------------------------------------------------------------------------------------------------------------------
# The binarised MNIST (Larochelle & Murray): .amat files and their npz


def tiny_binarized(monkeypatch, counts=(6, 3, 4), seed=0) -> dict[str, np.ndarray]:
    """Small 0/1 splits, made the published files' reference (their counts and SHA-256s) for this test."""
    rng = np.random.default_rng(seed)
    splits = {s: (rng.random((n, 28, 28)) < 0.3).astype(np.uint8) for s, n in zip(("train", "valid", "test"), counts)}
    for split, bits in splits.items():
        name = ds.BINARIZED_MNIST_FILES[split][0]
        monkeypatch.setitem(ds.BINARIZED_MNIST_FILES, split,
                            (name, len(bits), hashlib.sha256(ds.amat_text(bits)).hexdigest()))
    return splits


def test_amat_text_is_the_published_layout_and_parses_back():
    bits = (np.arange(2 * 784).reshape(2, 28, 28) % 3 == 0).astype(np.uint8)
    text = ds.amat_text(bits)
    lines = text.decode().split("\n")
    assert len(lines) == 3 and lines[-1] == "" and lines[0].split(" ") == [str(v) for v in bits[0].ravel()]
    np.testing.assert_array_equal(ds.parse_amat(text, "x"), bits)
    np.testing.assert_array_equal(ds.parse_amat(text.replace(b" ", b"\t"), "x"), bits)  # any whitespace
    with pytest.raises(UserError, match="784 values"):
        ds.parse_amat(b"0 1 0\n", "short.amat")
    with pytest.raises(UserError, match="0 or 1"):
        ds.parse_amat(text.replace(b"1", b"2", 1), "bad.amat")


def test_binarized_mnist_loads_from_amat_files_or_npz_checked_against_the_published_sha256(tmp_path, monkeypatch):
    splits = tiny_binarized(monkeypatch)
    folder = tmp_path / "binarized_mnist"
    folder.mkdir()
    for split, bits in splits.items():
        (folder / ds.BINARIZED_MNIST_FILES[split][0]).write_bytes(ds.amat_text(bits))
    for split in ("train", "valid", "test"):
        data = ds.load_dataset("binarized-mnist", split, data_dir=tmp_path)
        assert data.name == "binarized_mnist" and data.labels is None and data.images.dtype == np.uint8
        np.testing.assert_array_equal(data.images[:, 0], splits[split] * 255)  # 0/255, like every binarised set
    both = ds.load_dataset("binarized_mnist", "train+valid", data_dir=tmp_path)
    np.testing.assert_array_equal(both.images[:, 0] // 255, np.concatenate([splits["train"], splits["valid"]]))
    # binarize="static" leaves an already-binary dataset as it is: no re-binarisation
    np.testing.assert_array_equal(ds.load_dataset("binarized_mnist", "test", tmp_path, binarize="static").images,
                                  ds.load_dataset("binarized_mnist", "test", tmp_path).images)

    # A changed pixel fails the check (and passes with verify=False); so does the npz holding other arrays.
    damaged = splits["test"].copy()
    damaged[0, 0, 0] ^= 1
    (folder / "binarized_mnist_test.amat").write_bytes(ds.amat_text(damaged))
    with pytest.raises(UserError, match="SHA-256"):
        ds.load_dataset("binarized_mnist", "test", data_dir=tmp_path)
    assert ds.load_dataset("binarized_mnist", "test", data_dir=tmp_path, verify=False).images[0, 0, 0, 0] == \
        255 * damaged[0, 0, 0]

    # The npz (arrays train/valid/test) is checked through the SHA-256 of its .amat text.
    npz_dir = tmp_path / "npz"
    npz_dir.mkdir()
    np.savez(npz_dir / ds.BINARIZED_MNIST_NPZ, **splits)
    np.testing.assert_array_equal(ds.load_dataset("binarized_mnist", "valid", data_dir=npz_dir).images[:, 0] // 255,
                                  splits["valid"])
    np.savez(npz_dir / ds.BINARIZED_MNIST_NPZ, **{**splits, "test": damaged})
    with pytest.raises(UserError, match="SHA-256 \\(of its .amat text\\)"):
        ds.load_dataset("binarized_mnist", "test", data_dir=npz_dir)
    with pytest.raises(UserError, match="unknown split"):
        ds.load_dataset("binarized_mnist", "validation", data_dir=npz_dir)


def test_binarized_mnist_missing_files_are_named_and_download_checks_sha256(tmp_path, monkeypatch, http_server):
    splits = tiny_binarized(monkeypatch)
    with pytest.raises(UserError, match="binarized_mnist_test.amat or binarized_mnist.npz"):
        ds.load_dataset("binarized_mnist", "test", data_dir=tmp_path / "empty")
    served, url = http_server
    (served / "binarized_mnist_test.amat").write_bytes(ds.amat_text(splits["test"]))
    monkeypatch.setattr(ds, "BINARIZED_MNIST_URLS", (url,))
    data = ds.load_dataset("binarized_mnist", "test", data_dir=tmp_path / "dl", download=True)
    assert (tmp_path / "dl" / "binarized_mnist" / "binarized_mnist_test.amat").is_file()
    np.testing.assert_array_equal(data.images[:, 0] // 255, splits["test"])
    (served / "binarized_mnist_valid.amat").write_bytes(ds.amat_text(splits["test"][:3]))  # not the valid split
    with pytest.raises(UserError, match="checksum mismatch"):
        ds.load_dataset("binarized_mnist", "valid", data_dir=tmp_path / "dl", download=True)
    assert not (tmp_path / "dl" / "binarized_mnist" / "binarized_mnist_valid.amat").exists()
