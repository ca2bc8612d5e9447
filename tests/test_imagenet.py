"""The ImageNet experiment's parts (pairing, path columns, Kurakin's radius search, DeepFool's candidates)
and its entry point end to end on a tiny ONNX classifier with the demo photographs."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from helpers import ROOT, check_report_page, launch_processes
from onnx_models import tiny_classifier
from scipy.spatial.distance import cdist
from test_notebook import execute

from jaxfrag import attacks
from jaxfrag.experiments import imagenet as experiment
from jaxfrag.models import imagenet, onnx_graph

SIZE = 32


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.onnx"
    tiny_classifier(path, size=SIZE)
    f, params = imagenet.classifier(path, imagenet.Preprocessing(SIZE, (0.5,) * 3, (0.25,) * 3))
    photos = {n: imagenet.prepare(p, SIZE).reshape(-1) for n, p in imagenet.demo_photographs().items()}
    return path, (lambda x: f(params, x)), photos


def test_the_demo_pairs_every_shipped_photograph_once_as_a_source(tiny, tmp_path):
    """Tables 7-8 need 10 independent sources by default: every photograph (one per scene) is a source once,
    whatever the model's confidence, with the nearest photograph the model puts in another class."""
    from jaxfrag import imagenet as entry

    _, _, photos = tiny
    names = list(photos)
    assert len(names) >= 10
    stack = np.stack([photos[n] for n in names])
    assert np.min(cdist(stack, stack) + np.eye(len(names)) * 1e9) > 1.0  # no photograph twice
    predictions = {n: (k % 3, 0.05) for k, n in enumerate(names)}  # three classes, none confident
    args = entry.parse_args(["--out", str(tmp_path / "run")])
    pairs = entry._demo_pairs(args, photos, predictions)
    assert [p.source for p in pairs] == names
    for pair in pairs:
        others = [n for n in names if predictions[n][0] != predictions[pair.source][0]]
        nearest = others[int(np.argmin(cdist(photos[pair.source][None], np.stack([photos[n] for n in others]))))]
        assert pair.target == nearest and pair.target_class == predictions[nearest][0] != pair.source_class


@pytest.mark.parametrize("seed", range(3))
def test_nearest_targets_against_scipy(seed):
    rng = np.random.default_rng(seed)
    sources, targets = rng.uniform(size=(7, 300)), rng.uniform(size=(11, 300))
    targets[4] = sources[2] + 1e-7  # a near-duplicate must win for its source
    expected = np.argmin(cdist(sources, targets), axis=1)
    np.testing.assert_array_equal(experiment.nearest_targets(sources, targets), expected)
    assert experiment.nearest_targets(sources, targets)[2] == 4


@pytest.mark.parametrize("n_alpha", [11, 101])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_path_columns_on_an_affine_model(n_alpha, dtype):
    """For f(x) = W x + b every gradient is w_src - w_tgt: cos is constant and M = n cos L / (n - 1)."""
    with jax.enable_x64(dtype == jnp.float64):
        rng = np.random.default_rng(0)
        w, b = rng.normal(size=(5, 40)), rng.normal(size=5)
        x_src, x_tgt = rng.uniform(size=40), rng.uniform(size=40)
        f = lambda x: jnp.asarray(w, dtype) @ x + jnp.asarray(b, dtype)
        out = experiment.path_columns(f, jnp.asarray(x_src, dtype), jnp.asarray(x_tgt, dtype), 1, 3, n_alpha)
        g, direction = w[1] - w[3], x_tgt - x_src
        cos = g @ direction / (np.linalg.norm(g) * np.linalg.norm(direction))
        rtol = 1e-4 if dtype == jnp.float32 else 1e-10
        np.testing.assert_allclose(float(out["L"]), np.linalg.norm(direction), rtol=rtol)
        np.testing.assert_allclose(np.asarray(out["cos_path"]), np.full(n_alpha, cos), rtol=rtol * 10)
        for i in range(11):
            np.testing.assert_allclose(float(out[f"cos_theta_alpha_{i}"]), cos, rtol=rtol * 10)
        np.testing.assert_allclose(float(out["cos_mean"]), cos, rtol=rtol * 10)
        np.testing.assert_allclose(
            float(out["M"]), n_alpha * cos * np.linalg.norm(direction) / (n_alpha - 1), rtol=rtol
        )
        np.testing.assert_allclose(float(out["grad_norm_src"]), np.linalg.norm(g), rtol=rtol)


def test_path_columns_follow_the_papers_alpha(tiny):
    """On a nonlinear model: the paper's alpha is 1 at the source; gradients taken one point at a time here."""
    _, f, photos = tiny
    classes = {n: int(jnp.argmax(f(jnp.asarray(p)))) for n, p in photos.items()}
    source = "coffee"
    target = next(n for n in photos if classes[n] != classes[source])
    x_src, x_tgt = jnp.asarray(photos[source]), jnp.asarray(photos[target])
    src, tgt = classes[source], classes[target]
    n_alpha = 11
    out = jax.jit(lambda a, b: experiment.path_columns(f, a, b, src, tgt, n_alpha))(x_src, x_tgt)
    direction = np.asarray(x_tgt - x_src, np.float64)
    margin = jax.jit(jax.grad(lambda x: f(x)[src] - f(x)[tgt]))
    gradients = [np.asarray(margin(a * x_src + (1 - a) * x_tgt), np.float64) for a in np.linspace(0, 1, n_alpha)]
    cosines = [g @ direction / (np.linalg.norm(g) * np.linalg.norm(direction)) for g in gradients]
    np.testing.assert_allclose(np.asarray(out["cos_path"]), cosines, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(float(out["cos_theta_t"]), cosines[-1], rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(float(out["cos_theta_alpha_10"]), cosines[-1], rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(float(out["cos_theta_alpha_0"]), cosines[0], rtol=1e-3, atol=1e-5)
    length = np.linalg.norm(direction)
    expected_m = sum(np.linalg.norm(g) * c * length / (n_alpha - 1) for g, c in zip(gradients, cosines, strict=True))
    np.testing.assert_allclose(float(out["M"]), expected_m / np.linalg.norm(gradients[-1]), rtol=1e-3)


@pytest.mark.parametrize("eps", [0.001, 0.004, 0.0157, 0.05, 0.2])
def test_kurakin_step_count(eps):
    step = 1 / 255
    expected = max(math.ceil(min(eps / step + 4, 1.25 * eps / step)), 1)
    assert int(attacks.kurakin_steps(jnp.float32(eps), step)) == expected


def test_kurakin_search_brackets_its_smallest_radius(tiny):
    """Over photos and targets: the attack at the reported radius reaches the target when applied, stays in the
    ball and the box, and at the bracket's low end (eps_below, within the bisection's resolution) it does not."""
    _, f, photos = tiny
    step, bisections = 1 / 255, 8
    search = jax.jit(
        lambda x, src, tgt: attacks.iterative_targeted_min_eps(
            f, x, src, tgt, eps_max=0.25, step=step, bounds=(0.0, 1.0), bisections=bisections
        )
    )
    attack = jax.jit(
        lambda x, src, tgt, eps: attacks.iterative_targeted(
            f, x, src, tgt, eps, step, attacks.kurakin_steps(eps, step), (0.0, 1.0)
        )
    )
    checked = 0
    for name in ("coffee", "chelsea", "astronaut"):
        x = jnp.asarray(photos[name])
        logits = np.asarray(f(x))
        src = int(np.argmax(logits))
        for tgt in np.argsort(logits)[::-1][1:4]:
            found = search(x, src, int(tgt))
            assert bool(found.result.success), (name, tgt)
            delta = np.asarray(found.result.delta)
            assert int(jnp.argmax(f(x + found.result.delta))) == tgt
            assert np.max(np.abs(delta)) <= float(found.eps) * (1 + 1e-6)
            assert np.all(np.asarray(x) + delta >= -1e-7) and np.all(np.asarray(x) + delta <= 1 + 1e-7)
            below = float(found.eps_below)
            if below > 0:
                assert not bool(attack(x, src, int(tgt), jnp.float32(below)).success)
            assert float(found.eps) - below <= 2 * max(float(found.eps), step / 8) * 2.0**-bisections
            checked += 1
    assert checked == 9


def test_deepfool_candidates_on_affine_models():
    """With all classes as candidates the attack is unchanged; with fewer, it still crosses (verified) and is
    never shorter than the exact minimum nor longer than the exact minimum over the candidate classes."""
    classes, d = 8, 30

    def attack(w, b, x, label, k):
        f = lambda x: w @ x + b
        return attacks.minimal_l2(f, x, label, restarts=1, rescue_starts=0, candidates=k)

    run = jax.jit(attack, static_argnums=4)
    for seed in range(6):
        rng = np.random.default_rng(seed)
        w, b, x = rng.normal(size=(classes, d)), rng.normal(size=classes), rng.normal(size=d)
        args = [jnp.asarray(v, jnp.float32) for v in (w, b, x)]
        logits = w @ x + b
        label = int(np.argmax(logits))
        distances = np.full(classes, np.inf)
        others = np.arange(classes) != label
        distances[others] = (logits[label] - logits[others]) / np.linalg.norm(w[label] - w[others], axis=1)
        everything, unrestricted = run(*args, label, classes), run(*args, label, None)
        np.testing.assert_array_equal(np.asarray(everything.delta), np.asarray(unrestricted.delta))
        for k in (2, 3, 5):
            result = run(*args, label, k)
            assert bool(result.success)
            top = np.argsort(np.where(others, logits, -np.inf))[::-1][: k - 1]  # the label's rivals among them
            assert float(result.norm) >= distances.min() * (1 - 1e-4)
            assert float(result.norm) <= distances[top].min() * (1 + 1e-3)
            moved = w @ (x + np.asarray(result.delta, np.float64)) + b
            assert int(np.argmax(moved)) != label


# The entry point's tests are about its plumbing; the attack is tested in test_attacks*.py. DeepFool's
# lane alone (no other lanes, rescue, walks or DDN lane) is a fraction of the default attack's program to compile.
PLAIN_ATTACK = ["--restarts", 1, "--rescue-starts", 0, "--walk-steps", 0, "--lane-walk-steps", 0, "--ddn-steps", 0]


def _imagenet(*args, timeout=600):
    command = [sys.executable, "-m", "jaxfrag.imagenet", "--no-progress", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def _options(model, run, pairs: int = 2) -> list:
    options = ["--model", model, "--size", SIZE, "--mean", "0.5", "--std", "0.25", "--confidence", "0"]
    return options + ["--pairs", pairs, "--n-alpha", 11, "--refinements", 2, *PLAIN_ATTACK, "--out", run]


@pytest.fixture(scope="module")
def two_pairs(tiny, tmp_path_factory):
    """The entry point's run of the demo's first two pairs, and what it printed (each test works on a copy)."""
    run = tmp_path_factory.mktemp("two") / "run"
    first = _imagenet(*_options(tiny[0], run))
    assert first.returncode == 0, first.stderr
    return run, first


def test_entry_point_resumes_and_its_notebook_executes(tiny, two_pairs, tmp_path):
    model, _, _ = tiny
    run = tmp_path / "run"
    shutil.copytree(two_pairs[0], run)
    options, first = _options(model, run), two_pairs[1]
    assert "Table 7" in first.stdout and "Table 8" in first.stdout and "NOT the paper's" in first.stdout
    assert "+5.804" in first.stdout and "-0.0765" in first.stdout  # the paper's numbers beside ours
    for name in ("results.parquet", "summary.csv", "claims.csv", "meta.json"):
        assert (run / name).exists()
    for name in ("figure6.png", "pairs.png"):
        assert (run / "figures" / name).exists()
    rows = pd.read_parquet(run / "results.parquet")
    assert len(rows) == 2 and all(len(p) == 11 for p in rows.cos_path)
    assert rows.Q_ll_success.all() and rows.Q_l2_success.all() and rows.Q_l2_targeted_success.all()
    assert (rows.class_ll == rows.target_class).all() and (rows.class_l2 != rows.source_class).all()
    meta = json.loads((run / "meta.json").read_text())
    assert meta["config"]["images"] == "demo" and len(meta["config"]["pairs"]) == 2
    assert meta["command"][:2] == ["jaxfrag", "imagenet"] and meta["jaxfrag_version"]
    check_report_page(run, min_verdict_rows=2)  # Table 8, and Table 7 with Figure 6
    # Without --resume the folder is refused; with it, the finished pairs are kept and the rows are the same.
    refused = _imagenet(*options)
    assert refused.returncode == 2 and "--resume" in refused.stderr
    (run / "results.parquet").unlink()
    (run / "cells" / "imagenet_d0001.parquet").unlink()
    again = _imagenet(*options, "--resume")
    assert again.returncode == 0, again.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(run / "results.parquet"), rows)
    # Two processes (jax.distributed, one CPU device each) share the pairs: the same rows.
    processes = launch_processes("jaxfrag.imagenet", [*options[:-1], tmp_path / "two"], 2)
    outputs = [process.communicate(timeout=600) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    assert "measured 1 pairs; process 0 reports" in outputs[1][0]  # a share, not every pair
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "two" / "results.parquet"), rows)
    text, images = execute(ROOT / "notebooks" / "imagenet.ipynb", run)
    assert "2 pairs in" in text and "paper 1" in text and "|M/(0.5L)| - Q_ll/(0.5L)" in text
    assert len(images) == 1
    # More pairs on --resume: the run keeps its two and gains the next; fewer are refused in one line.
    kept = {cell.name: cell.stat().st_mtime_ns for cell in (run / "cells").glob("*.parquet")}
    grown = _imagenet(*_options(model, run, pairs=3), "--resume")
    assert grown.returncode == 0, grown.stderr
    extended = pd.read_parquet(run / "results.parquet")
    assert len(extended) == 3 and len(kept) == 2
    assert all((run / "cells" / name).stat().st_mtime_ns == when for name, when in kept.items())  # not measured again
    pd.testing.assert_frame_equal(extended.head(2), rows)
    shrunk = _imagenet(*_options(model, run, pairs=1), "--resume")
    assert shrunk.returncode == 2 and "not shrink" in shrunk.stderr and shrunk.stderr.count("\n") == 1


def test_decide_grows_an_untested_study_to_ten_pairs_and_judges_it(two_pairs, tmp_path):
    """Tables 7-8 on 2 pairs are untested; `jaxfrag decide` runs the study again with --pairs 10 --resume,
    keeps its two pairs, and the ledger judges the ten."""
    run, ledger = tmp_path / "run", tmp_path / "ledger"
    shutil.copytree(two_pairs[0], run)
    first = pd.read_parquet(run / "results.parquet")
    command = [sys.executable, "-m", "jaxfrag", "decide", "--no-progress", str(run), "--ledger", str(ledger)]
    decided = subprocess.run([*command, "--growth", "5", "--rounds", "1"], capture_output=True, text=True,
                             cwd=ROOT, timeout=900)  # fmt: skip
    assert decided.returncode == 0, decided.stderr
    rows = pd.read_parquet(run / "results.parquet")
    assert len(rows) == 10
    pd.testing.assert_frame_equal(rows.head(2), first)
    meta = json.loads((run / "meta.json").read_text())
    assert meta["extended"] == {"imagenet/pairs": 10} and "--pairs 2" in " ".join(meta["command"])
    table = pd.read_csv(ledger / "verdicts.csv").set_index("claim")
    assert (table.loc[["Table 8", "Table 7 and Figure 6"], "n"] >= 10).all()
    assert not table.loc[["Table 8", "Table 7 and Figure 6"], "verdict"].str.startswith("untested").any()
    assert table.loc["Table 8", "command"].endswith(f"&& jaxfrag decide {run} --ledger {ledger} --growth 5 --rounds 1")


def test_user_folders_pair_each_source_with_its_nearest_target(tiny, tmp_path):
    """--image-dirs SOURCE_DIR TARGET_DIR: the photos the model assigns to the folder's class, nearest pairs.
    (The entry point's options as in the test above: its compiled programs come from the compilation cache.)"""
    model, f, photos = tiny
    from PIL import Image

    names = ["coffee", "chelsea", "astronaut", "rocket", "motorcycle", "camera"]
    classes = {n: int(jnp.argmax(f(jnp.asarray(photos[n])))) for n in names}
    source_class = classes["coffee"]
    others = [n for n in names if classes[n] != source_class]
    target_class = classes[others[0]]
    folders = {"src": tmp_path / "src", "tgt": tmp_path / "tgt"}
    for folder in folders.values():
        folder.mkdir()
    for n in names:  # every photo in both folders: only those of the folder's class may be used
        for folder in folders.values():
            Image.fromarray(imagenet.demo_photographs()[n]).save(folder / f"{n}.png")
    run = tmp_path / "run"
    result = _imagenet(
        "--model", model, "--size", SIZE, "--mean", "0.5", "--std", "0.25", "--image-dirs", folders["src"],
        folders["tgt"], "--classes", source_class, target_class, "--n-alpha", 11, "--refinements", 2,
        *PLAIN_ATTACK, "--out", run,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = pd.read_parquet(run / "results.parquet")
    sources = sorted(f"src/{n}.png" for n in names if classes[n] == source_class)
    targets = [n for n in names if classes[n] == target_class]
    assert sorted(rows.source) == sources
    read = {n: imagenet.prepare(imagenet.read_image(folders["tgt"] / f"{n}.png"), SIZE).reshape(-1) for n in targets}
    for _, row in rows.iterrows():
        x = imagenet.prepare(imagenet.read_image(folders["src"] / row.source.split("/")[1]), SIZE).reshape(-1)
        distances = {n: np.linalg.norm(x.astype(np.float64) - read[n]) for n in targets}
        assert row.target == f"tgt/{min(distances, key=distances.get)}.png"
        assert row.source_class == source_class and row.target_class == target_class


@pytest.mark.parametrize(
    "args, message",
    [
        (["--n-alpha", "12"], "--n-alpha must be 10 k + 1"),
        (["--model", "absent.onnx", "--size", "32"], "is not a file"),
        (["--size", "32"], "describe a --model PATH"),
        (["--image-dirs", "absent-a", "absent-b"], "is not a folder"),
        (["--kurakin-eps-max", "-1"], "--kurakin-eps-max must be > 0"),
        (["--candidates", "1"], "--candidates must be at least 2"),
        (["--rescue-starts", "-16"], "--rescue-starts must be >= 0"),
        (["--mean", "1,2"], "--mean must be one or three"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_no_folder(tmp_path, args, message):
    run = tmp_path / "run"
    result = _imagenet("--out", run, *args, timeout=120)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr and not run.exists()


def test_bad_model_files_exit_2_naming_the_problem(tmp_path):
    not_onnx = tmp_path / "model.onnx"
    not_onnx.write_text("this is not a model\n")
    result = _imagenet("--out", tmp_path / "run", "--model", not_onnx, "--size", SIZE, timeout=120)
    assert result.returncode == 2 and "is not an ONNX model" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()
    import onnx

    model = tiny_classifier(tmp_path / "tiny.onnx", size=SIZE)
    clip = model.graph.node[1]  # Clip(c1, 0, 6) becomes HardSwish(c1): a real op the interpreter lacks
    clip.op_type = "HardSwish"
    del clip.input[1:]
    onnx.save(model, tmp_path / "hardswish.onnx")
    result = _imagenet("--out", tmp_path / "run", "--model", tmp_path / "hardswish.onnx", "--size", SIZE, timeout=120)
    assert result.returncode == 2 and "HardSwish" in result.stderr and "Traceback" not in result.stderr
    with pytest.raises(onnx_graph.OnnxError, match="HardSwish"):
        onnx_graph.load_onnx(tmp_path / "hardswish.onnx")
