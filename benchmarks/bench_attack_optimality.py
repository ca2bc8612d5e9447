"""Benchmark: how short and how fast `attacks.minimal_l2` is against the field's minimal-norm L2 attacks.

    pip install -e '.[bench]'                                   # torch==2.13.0, foolbox==3.3.4
    pip install --no-deps adv_lib==0.2.8                        # see below for why --no-deps
    python benchmarks/bench_attack_optimality.py --networks runs/mnist/networks.npz
    python benchmarks/bench_attack_optimality.py --quick        # a smoke run (trains one CNN briefly)
    python benchmarks/bench_attack_optimality.py --networks runs/mnist/networks.npz --nets 1 \
        --modes untargeted --variant '{"restarts": 16}' --variant '{"walk_steps": 1000}'

The protocol is AttackBench's (Cinà et al. 2024): per input, the best verified
norm over every attack, and each attack's ratio to it. On the same inputs, in
one process, one after another on the same cores:
* adv_lib 0.2.8 (the PyTorch library behind AttackBench): DDN, FMN-L2 and
  ALMA-L2 at AttackBench's budget of 1000 steps, SuperDeepFool, FAB-L2
  (100 iterations); Foolbox 3's L2 DeepFool (untargeted only: it has no
  targeted mode);
* jaxfrag's `attacks.minimal_l2` at its defaults and as the MNIST study calls it (`OURS`).
Suites: the paper's MNIST CNN (networks of a `jaxfrag mnist` run, or trained
here), correctly classified test 7s, untargeted and targeted to 1 (Tables 5-6's
Q_l2); the `relu` experiment's nets at d = 12 (the sweep's own trials, width
3000), at b1 and b2, where the two classes make targeted and untargeted one.

The input space is the engine's (and the paper's): R^d, with no box. adv_lib's
attacks require and clip to [0, 1], so they attack the model composed with the
affine map u -> (u - 1/2) * WIDE, u in [0, 1]^d: pixels may move anywhere in
[-WIDE/2, WIDE/2], which no attack here comes near (the share of coordinates
that touch the box is recorded). Norms are reported in the model's input
units; the attacks' own initial step sizes and norms (given in [0, 1] units)
are divided by WIDE so that they start at the same size in the model's units.
adv_lib declares torchvision and visdom as requirements; torchvision must not
be installed beside torch 2.13, so it is installed without dependencies and
its two optional modules (the LPIPS distance, the visdom logger) are replaced
by stubs before import: none of the attacks used here touches them.

Every attack's point is applied to the JAX model: it counts only if it reaches
the goal there (argmax); a point that passed in PyTorch but sits within
float32 rounding of the boundary in JAX is pushed out along its own ray by the
smallest factor in VERIFY_FACTORS that passes (recorded). Forward and backward
evaluations are counted per input (PyTorch: rows through the model and rows of
input gradients; ours: the attack's own counters). Results go to
benchmarks/results/bench_attack_optimality-<time>.json and a Markdown table.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import sys
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from common import machine, write_result  # noqa: E402

from jaxfrag import attacks, datasets, parallel  # noqa: E402
from jaxfrag.config import Config  # noqa: E402
from jaxfrag.experiments import linear, relu  # noqa: E402
from jaxfrag.models import cnn  # noqa: E402
from jaxfrag.models import relu as relu_net  # noqa: E402

WIDE = 40.0  # the box [-WIDE/2, WIDE/2] the affine wrap gives adv_lib's attacks, at least (`wide_for`)
STEPS = 1000  # AttackBench's budget for DDN, FMN and ALMA
VERIFY_FACTORS = (1.0, 1 + 1e-6, 1 + 1e-5, 1 + 1e-4, 1 + 1e-3)
SOURCE, TARGET = 7, 1
# Our attack as the engine runs it: (minimal_l2's options, inputs per block). The defaults (the
# relu experiment's: lanes, DDN's lane, rescue, walks) two inputs at a time, as the rescue's 256
# starts per input do not fit more; the `walk` preset (DeepFool's lane and a 300-step walk, the MNIST
# study's attack until it took `strong`, the defaults and ALMA's lanes: `--variant '{"alma_lanes": 8}'`)
# 16 at a time. The names stay as they were so that `--table` pools old and new results.
OURS = {
    "minimal_l2": ({}, 2),
    "minimal_l2 (MNIST study)": (attacks.PRESETS["walk"], 16),
}
# Inputs per block for the variants of `--variant` (options beside the defaults): the rescue runs its
# starts in blocks, so 8 inputs fit.
VARIANT_BLOCK = 8
# Whether to count our attack's evaluations (`--count-evaluations`): a second run of the program with
# host callbacks, which XLA compiles slowly for the CNN's lanes (minutes).
COUNT_EVALUATIONS = False


def import_adv_lib():
    """adv_lib's attack functions, with its two optional imports stubbed (see the module docstring)."""
    for name, attribute in (("adv_lib.distances.lpips", "LPIPS"), ("adv_lib.utils.visdom_logger", "VisdomLogger")):
        if name not in sys.modules:
            stub = types.ModuleType(name)
            setattr(stub, attribute, None)
            sys.modules[name] = stub
    from adv_lib.attacks import alma, ddn, fab, fmn, sdf

    return {"ddn": ddn, "fmn": fmn, "alma": alma, "sdf": sdf, "fab": fab}


# ---------------------------------------------------------------- PyTorch twins of the JAX models


def torch_cnn(params):
    """The paper's CNN in PyTorch, with the JAX network's weights (cnn.py keeps PyTorch's layout)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(1, 32, 3), nn.Conv2d(32, 64, 3)
            self.fc1, self.fc2 = nn.Linear(9216, 128), nn.Linear(128, 10)

        def forward(self, x):  # x (n, 784) pixels
            h = (x.view(-1, 1, 28, 28) - cnn.MEAN) / cnn.STD
            h = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(h)))), 2)
            return self.fc2(F.relu(self.fc1(torch.flatten(h, 1))))

    net = Net().eval()
    p = jax.tree.map(np.asarray, params)
    with torch.no_grad():
        for layer, name in ((net.conv1, "Conv_0"), (net.conv2, "Conv_1")):
            layer.weight.copy_(torch.tensor(p[name]["kernel"].transpose(3, 2, 0, 1)))
            layer.bias.copy_(torch.tensor(p[name]["bias"]))
        for layer, name in ((net.fc1, "Dense_0"), (net.fc2, "Dense_1")):
            layer.weight.copy_(torch.tensor(p[name]["kernel"].T))
            layer.bias.copy_(torch.tensor(p[name]["bias"]))
    return net


def torch_relu(stacked):
    """`models.relu` networks stacked one per input row (PyTorch's nn.Linear layout), applied row by row."""
    import torch
    from torch import nn

    class Nets(nn.Module):
        def __init__(self):
            super().__init__()
            self.weights = [torch.tensor(np.asarray(w)) for w in stacked.weights]
            self.biases = [torch.tensor(np.asarray(b)) for b in stacked.biases] if stacked.biases else None

        def forward(self, x):  # x (n, d), row i through network i
            for k, weight in enumerate(self.weights):
                x = torch.einsum("nij,nj->ni", weight, x)
                if self.biases is not None:
                    x = x + self.biases[k]
                if k < len(self.weights) - 1:
                    x = torch.relu(x)
            return x

    return Nets().eval()


def wide_for(x: np.ndarray) -> float:
    """The box's width for these inputs: WIDE, or 8 times their largest coordinate (a power of 2) if larger."""
    return float(max(WIDE, 2.0 ** np.ceil(np.log2(8 * np.abs(x).max()))))


def unboxed(model, wide: float):
    """model(x) as a function of u in [0, 1]^d, x = (u - 1/2) wide, counting evaluations per input row."""
    import torch
    from torch import nn

    class Count(torch.autograd.Function):
        @staticmethod
        def forward(ctx, u):
            return u.view_as(u)

        @staticmethod
        def backward(ctx, grad):
            wrapper.backwards += grad.shape[0]
            return grad

    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.model, self.forwards, self.backwards = model, 0, 0

        def forward(self, u):
            self.forwards += u.shape[0]
            if u.requires_grad:
                u = Count.apply(u)
            return self.model((u - 0.5) * wide)

    wrapper = Wrapper()
    for parameter in wrapper.parameters():
        parameter.requires_grad_(False)
    return wrapper


# ---------------------------------------------------------------- the baselines


def baselines(targeted: bool, wide: float, classes: int):
    """name -> attack(wrapped model, u, labels or targets) -> adversarial u, at AttackBench's budgets."""
    adv = import_adv_lib()
    import foolbox as fb

    table = {
        "DDN": lambda m, u, y: adv["ddn"](m, u, y, targeted=targeted, steps=STEPS, init_norm=1.0 / wide, levels=None),
        "FMN": lambda m, u, y: adv["fmn"](m, u, y, norm=2, targeted=targeted, steps=STEPS, α_init=1.0 / wide),
        "ALMA": lambda m, u, y: adv["alma"](m, u, y, targeted=targeted, num_steps=STEPS, lr_init=0.1 / wide),
    }
    if classes < 3:  # ALMA's loss, the difference-of-logits ratio, needs the third largest logit
        del table["ALMA"]
    if not targeted:  # adv_lib's SuperDeepFool and FAB, and Foolbox's DeepFool, are untargeted only
        table["SuperDeepFool"] = lambda m, u, y: adv["sdf"](m, u, y)
        table["FAB"] = lambda m, u, y: adv["fab"](m, u, y, norm=2, n_iter=100)

        def foolbox_deepfool(m, u, y):
            points, _, _ = fb.attacks.L2DeepFoolAttack()(fb.PyTorchModel(m, bounds=(0, 1)), u, y, epsilons=None)
            return points

        table["Foolbox DeepFool"] = foolbox_deepfool
    return table


def run_baseline(attack, model, x: np.ndarray, goals: np.ndarray, wide: float) -> dict:
    import torch

    torch.manual_seed(0)
    wrapped = unboxed(model, wide)
    u = torch.tensor(x / wide + 0.5, dtype=torch.float32)
    start = time.perf_counter()
    adversarial = attack(wrapped, u, torch.tensor(goals, dtype=torch.long)).detach()
    seconds = time.perf_counter() - start
    points = (adversarial.numpy().astype(np.float64) - 0.5) * wide
    touches = np.mean((adversarial.numpy() <= 0) | (adversarial.numpy() >= 1))
    return {
        "deltas": points - x,
        "seconds": seconds,
        "forwards": wrapped.forwards / len(x),
        "backwards": wrapped.backwards / len(x),
        "box_share": float(touches),
    }


# ---------------------------------------------------------------- ours


def run_ours(model, x: np.ndarray, labels: np.ndarray, targets, attack=attacks.minimal_l2, block: int = 2) -> dict:
    """minimal_l2 over the inputs, `block` at a time in one compiled program; compile time excluded.

    `model` is f(x) -> logits, or (apply, stacked) for one network per input: apply(params_i, x_i).
    """
    apply, stacked = (model, None) if callable(model) else model

    def one(params, point, label, target):
        f = apply if stacked is None else functools.partial(apply, params)
        return attack(f, point, label, None if targets is None else target)

    goals = labels if targets is None else targets
    per_input = stacked if stacked is not None else jnp.zeros(len(x))
    program = jax.jit(lambda p, xs, ys, ts: jax.lax.map(lambda a: one(*a), (p, xs, ys, ts), batch_size=block))
    xs, ys, ts = jnp.asarray(x, jnp.float32), jnp.asarray(labels), jnp.asarray(goals)
    compiled = program.lower(per_input, xs, ys, ts).compile()  # compile time apart, as for PyTorch's warm start
    start = time.perf_counter()
    result = jax.block_until_ready(compiled(per_input, xs, ys, ts))
    seconds = time.perf_counter() - start
    row = {"deltas": np.asarray(result.delta, np.float64), "seconds": seconds}
    if not COUNT_EVALUATIONS:
        return row
    # Counted in a second run (the callbacks would slow the timed one): every evaluation the
    # compiled program makes, including those of lanes that had already finished in a batch.
    counts = {"forwards": 0, "backwards": 0}
    counted = counting(apply, x.shape[1], counts)
    counting_program = jax.jit(
        lambda p, xs, ys, ts: jax.lax.map(
            lambda a: attack(
                counted if stacked is None else functools.partial(counted, a[0]),
                a[1],
                a[2],
                None if targets is None else a[3],
            ),
            (p, xs, ys, ts),
            batch_size=block,
        )
    )
    jax.block_until_ready(counting_program(per_input, xs, ys, ts))
    jax.effects_barrier()
    row.update({name: value / len(x) for name, value in counts.items()})
    return row


def counting(apply, size: int, counts: dict):
    """apply(..., x) that adds to counts["forwards"] and counts["backwards"] the inputs it evaluates
    (x holds x.size / size of them under vmap), through host callbacks."""

    def add(name):
        def callback(x):
            counts[name] += x.size // size

        return callback

    @jax.custom_vjp
    def tap(x):
        jax.debug.callback(add("forwards"), x)
        return x

    def tap_forward(x):
        jax.debug.callback(add("forwards"), x)
        return x, None

    def tap_backward(_, gradient):
        jax.debug.callback(add("backwards"), gradient)
        return (gradient,)

    tap.defvjp(tap_forward, tap_backward)
    return lambda *args: apply(*args[:-1], tap(args[-1]))


# ---------------------------------------------------------------- verification and statistics


def verified_norms(f_batch, x: np.ndarray, deltas: np.ndarray, labels, targets) -> tuple[np.ndarray, np.ndarray]:
    """Each delta's norm if x + factor * delta reaches the goal in JAX for a factor of VERIFY_FACTORS, else inf."""
    norms = np.full(len(x), np.inf)
    factors = np.full(len(x), np.nan)
    for factor in reversed(VERIFY_FACTORS):  # the smallest passing factor is written last
        logits = np.asarray(f_batch(jnp.asarray(x + factor * deltas, jnp.float32)))
        winner = logits.argmax(axis=1)
        ok = (winner != labels) if targets is None else (winner == targets)
        ok &= np.all(np.isfinite(deltas), axis=1)
        norms = np.where(ok, factor * np.linalg.norm(deltas, axis=1), norms)
        factors = np.where(ok, factor, factors)
    return norms, factors


def summarise(norms: dict, rows: dict, ours: tuple[str, ...]) -> dict:
    """Per attack: success, ratio to the best of all (median, p90, max, share above 1.01), time,
    evaluations; for each of `ours`, also its ratio to the best of the baselines alone."""
    table = np.stack(list(norms.values()))
    best_all = table.min(axis=0)
    best_baselines = np.stack([v for k, v in norms.items() if k not in ours]).min(axis=0)
    summary = {}
    for name, values in norms.items():
        found = np.isfinite(values)
        ratio = values[found] / best_all[found]
        stats = {
            "success": float(found.mean()),
            "ratio_median": float(np.median(ratio)) if found.any() else None,
            "ratio_p90": float(np.quantile(ratio, 0.9)) if found.any() else None,
            "ratio_max": float(ratio.max()) if found.any() else None,
            "share_above_1.01": float(np.mean(ratio > 1.01)) if found.any() else None,
            "seconds": rows[name]["seconds"],
            "inputs_per_s": len(values) / rows[name]["seconds"],
            "forwards": rows[name].get("forwards"),
            "backwards": rows[name].get("backwards"),
        }
        summary[name] = stats
    for name in ours:
        summary[name]["vs_best_baseline"] = vs_best(norms[name] / best_baselines)
    return summary


def vs_best(mine: np.ndarray) -> dict:
    return {
        "median": float(np.median(mine)),
        "p90": float(np.quantile(mine, 0.9)),
        "max": float(np.max(mine)),
        "share_within_1.01": float(np.mean(mine <= 1.01)),
        "share_within_1.05": float(np.mean(mine <= 1.05)),
        "share_shorter_by_1pct": float(np.mean(mine < 1 / 1.01)),
    }


def models_digest(params, x) -> str:
    """sha256 of a suite's networks and inputs: `--reuse` needs the very same ones (the relu suite's
    nets are trained again on each run, and on another CPU they come out different)."""
    digest = hashlib.sha256()
    for leaf in [*jax.tree.leaves(params), x]:
        digest.update(np.ascontiguousarray(np.asarray(leaf, np.float32)).tobytes())
    return digest.hexdigest()


def compare(
    name: str, f_batch, f_one, model_torch, x, labels, targets, reuse: dict | None = None, digest: str = ""
) -> dict:
    """Every attack on one suite's inputs; per-input norms and the summary.

    With `reuse` (a previous result's suite entry on the same networks and inputs, `digest`), the
    baselines' norms and times are taken from it and only ours runs: for tuning, never for a
    reported comparison.
    """
    if reuse is not None and reuse.get("models_sha256", digest) != digest:
        raise SystemExit(f"--reuse: {name}'s networks or inputs differ from the reused result's; run its baselines")
    if reuse is not None and "models_sha256" not in reuse:
        print(f"  {name}: the reused result has no digest of its networks; reusing it unchecked", flush=True)
    goals = labels if targets is None else targets
    wide = wide_for(x)
    rows, norms, factors = {}, {}, {}
    classes = int(np.asarray(f_batch(jnp.asarray(x, jnp.float32))).shape[-1])
    for attack_name, attack in baselines(targets is not None, wide, classes).items():
        if reuse is not None:
            norms[attack_name] = np.asarray([np.inf if v is None else v for v in reuse["norms"][attack_name]])
            rows[attack_name] = {k: reuse["summary"][attack_name][k] for k in ("seconds", "forwards", "backwards")}
            continue
        rows[attack_name] = run_baseline(attack, model_torch, x, goals, wide)
        norms[attack_name], factors[attack_name] = verified_norms(
            f_batch, x, rows[attack_name]["deltas"], labels, targets
        )
        print(f"  {name} {attack_name}: {rows[attack_name]['seconds']:.1f} s", flush=True)
    for variant, (options, block) in OURS.items():
        attack = functools.partial(attacks.minimal_l2, **options)
        rows[variant] = run_ours(f_one, x, labels, targets, attack, block)
        norms[variant], factors[variant] = verified_norms(f_batch, x, rows[variant]["deltas"], labels, targets)
    summary = summarise(norms, rows, tuple(OURS))
    for attack_name, stats in summary.items():
        print(
            f"  {name} {attack_name:>16}: success {stats['success']:.2f}, ratio to best median "
            f"{stats['ratio_median']:.4f} p90 {stats['ratio_p90']:.4f} max {stats['ratio_max']:.4f}, "
            f"{stats['inputs_per_s']:.2f} inputs/s",
            flush=True,
        )
        if "vs_best_baseline" in stats:
            print(f"  {name} {attack_name} vs best baseline: {stats['vs_best_baseline']}", flush=True)
    return {
        "inputs": len(x),
        "models_sha256": digest,
        "wide": wide,
        "summary": summary,
        "norms": {k: np.where(np.isfinite(v), v, None).tolist() for k, v in norms.items()},
        "verify_factors": {k: np.where(np.isfinite(v), v, None).tolist() for k, v in factors.items()},
        "box_share": {k: r.get("box_share") for k, r in rows.items()},
    }


# ---------------------------------------------------------------- suites


def mnist_suite(args) -> dict:
    data = datasets.mnist()
    if args.networks:
        params, _ = cnn.load(Path(args.networks))[:2]
        count = jax.tree.leaves(params)[0].shape[0]
    else:
        count = 1
        params = cnn.train(jax.random.split(jax.random.key(0), 1), data.x_train[:16384], data.y_train[:16384])
    results = {}
    for k in range(args.first_net, min(count, args.first_net + args.nets)):
        one = cnn.select(params, k)
        f_one = lambda x, one=one: cnn.apply(one, x.reshape(28, 28))  # noqa: E731
        f_batch = jax.jit(lambda xs, one=one: cnn.apply(one, xs.reshape(-1, 28, 28)))
        sevens = np.flatnonzero(data.y_test == SOURCE)
        sevens = sevens[cnn.predict(one, data.x_test[sevens]) == SOURCE][: args.inputs]
        x = data.x_test[sevens].reshape(len(sevens), -1).astype(np.float64) / 255
        labels = np.full(len(x), SOURCE)
        model_torch = torch_cnn(one)
        modes = {"untargeted": None, "targeted": np.full(len(x), TARGET)}
        for mode in args.modes.split(","):
            targets = modes[mode]
            key = f"mnist net {k} {mode}"
            print(key, flush=True)
            reuse = args.reuse.get(key)
            results[key] = {
                "test_indices": sevens.tolist(),
                **compare(key, f_batch, f_one, model_torch, x, labels, targets, reuse, models_digest(one, x)),
            }
    return results


def relu_suite(args) -> dict:
    """The relu experiment's trials at d = 12 (the sweep's keys and default config), at b1 and b2."""
    d = 12
    config = Config()
    key = parallel.cell_key(config.seed, "relu", d)
    keys = parallel.trial_keys(key, jnp.arange(args.relu_nets))
    train = jax.jit(lambda k: linear.train_trial(jax.random.split(k)[0], d, config, "relu", relu_net))
    xs, nets = [], []
    for trial_key in keys:
        a, _, net, *_ = train(trial_key)
        pair = relu.pair_words(jax.random.split(trial_key)[1], d)
        z_minus = np.asarray(relu.data.sign_vectors(pair[None], d, a.dtype)[0])
        z_plus = z_minus.copy()
        z_plus[-1] = 1
        for z in (z_plus, z_minus):
            xs.append(np.asarray(a, np.float64) @ z)
            nets.append(net)
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *nets)  # one net per input row
    x = np.asarray(xs)
    f_batch = jax.jit(jax.vmap(relu_net.apply))
    f_rows = lambda points: f_batch(stacked, points)  # noqa: E731
    labels = np.asarray(f_rows(jnp.asarray(x, jnp.float32))).argmax(axis=1)
    print("relu d=12", flush=True)
    suite = compare(
        "relu d=12",
        f_rows,
        (relu_net.apply, stacked),
        torch_relu(stacked),
        x,
        labels,
        None,
        args.reuse.get("relu d=12"),
        models_digest(stacked, x),
    )
    return {"relu d=12": suite}


def markdown(results: list[dict]) -> str:
    """The docs' tables from one or more results: per suite (MNIST networks pooled by mode), each
    attack's ratio to the best of all per input, and ours against the best of the baselines alone.

    Several results pool their suites, each group over the attacks that every one of its suites ran;
    a suite measured in more than one file gains the later files' attacks where its networks and inputs
    are the same (`models_sha256`; a `--reuse` run's file adds its variants to the run it reused), and
    is the last file's otherwise. inputs/s then mixes runs, whose timings are comparable only within one run.
    """
    suites: dict[str, dict] = {}
    for result in results:
        for key, suite in result["suites"].items():
            earlier = suites.get(key)
            same_inputs = earlier is not None and suite.get("models_sha256") is not None
            if same_inputs and earlier.get("models_sha256") == suite["models_sha256"]:
                suite = {
                    **suite,
                    "norms": {**earlier["norms"], **suite["norms"]},
                    "summary": {**earlier["summary"], **suite["summary"]},
                }
            suites[key] = suite
    groups: dict[str, list[dict]] = {}
    for key, suite in suites.items():
        group = key.split(" net ")[0] + (" " + key.rsplit(" ", 1)[-1] if " net " in key else "")
        groups.setdefault(group, []).append(suite)
    pooled: dict[str, dict[str, list]] = {}
    seconds: dict[str, dict[str, float]] = {}
    for group, members in groups.items():
        common = [name for name in members[0]["norms"] if all(name in suite["norms"] for suite in members)]
        for suite in members:
            for name in common:
                values = suite["norms"][name]
                pooled.setdefault(group, {}).setdefault(name, []).extend(np.inf if v is None else v for v in values)
                seconds.setdefault(group, {}).setdefault(name, 0.0)
                seconds[group][name] += suite["summary"][name]["seconds"]
    lines = []
    for group, norms in pooled.items():
        table = {name: np.asarray(values, float) for name, values in norms.items()}
        best = np.min(np.stack(list(table.values())), axis=0)
        ours = [name for name in table if name.startswith("minimal_l2")]
        best_baseline = np.min(np.stack([v for k, v in table.items() if k not in ours]), axis=0)
        count = len(best)
        lines += [
            f"**{group}** ({count} inputs)",
            "",
            "| attack | ratio to best: median | p90 | max | share > 1.01 | inputs/s |",
            "|---|---|---|---|---|---|",
        ]
        for name, values in table.items():
            ratio = values / best
            lines.append(
                f"| {name} | {np.median(ratio):.4f} | {np.quantile(ratio, 0.9):.4f} | {np.max(ratio):.4f} | "
                f"{np.mean(ratio > 1.01):.0%} | {count / seconds[group][name]:.2f} |"
            )
        for name in ours:
            mine = vs_best(table[name] / best_baseline)
            lines.append(
                f"\n{name} / best baseline: median {mine['median']:.4f}, p90 {mine['p90']:.4f}, max "
                f"{mine['max']:.4f}; within 1.01 on {mine['share_within_1.01']:.1%}, within 1.05 on "
                f"{mine['share_within_1.05']:.1%}, 1% shorter on {mine['share_shorter_by_1pct']:.1%}."
            )
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--networks", default=None, help="a `jaxfrag mnist` run's networks.npz")
    parser.add_argument("--nets", type=int, default=3, help="MNIST networks attacked")
    parser.add_argument("--first-net", type=int, default=0, help="the first of them (networks.npz's index)")
    parser.add_argument("--inputs", type=int, default=100, help="test 7s per MNIST network")
    parser.add_argument("--relu-nets", type=int, default=50, help="relu nets at d = 12 (two inputs each)")
    parser.add_argument("--suites", default="mnist,relu")
    parser.add_argument("--reuse", default=None, help="a previous result JSON: reuse its baselines, run only ours")
    parser.add_argument("--count-evaluations", action="store_true", help="count our attack's passes (slow)")
    parser.add_argument("--modes", default="untargeted,targeted", help="the MNIST suites' modes")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="JSON",
        help="also run minimal_l2 with these options beside the defaults, e.g. '{\"restarts\": 16}' (repeatable)",
    )
    parser.add_argument(
        "--variants-only",
        action="store_true",
        help="run only the --variant attacks, not the defaults and the MNIST study's (for tuning with --reuse)",
    )
    parser.add_argument(
        "--table", nargs="+", default=None, help="print the Markdown tables of result JSONs (pooled) and exit"
    )
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args(argv)
    if args.table:
        print(markdown([json.loads(Path(path).read_text()) for path in args.table]))
        return
    global COUNT_EVALUATIONS
    COUNT_EVALUATIONS = args.count_evaluations
    if args.variants_only:
        if not args.variant:
            parser.error("--variants-only needs at least one --variant")
        OURS.clear()
    for text in args.variant:
        try:
            options = json.loads(text)
        except ValueError:
            options = None
        if not isinstance(options, dict) or not options:
            parser.error(f"--variant {text!r}: not a JSON object of minimal_l2's options")
        name = ", ".join(f"{key}={value}" for key, value in options.items())
        OURS[f"minimal_l2 ({name})"] = (options, VARIANT_BLOCK)
    if not set(args.modes.split(",")) <= {"untargeted", "targeted"}:
        parser.error(f"--modes {args.modes!r}: untargeted, targeted or both")
    args.reuse = json.loads(Path(args.reuse).read_text())["suites"] if args.reuse else {}
    if args.quick:
        args.nets, args.inputs, args.relu_nets = 1, 8, 2
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    info = machine()
    info["torch"] = torch.__version__
    print(f"{info['processor']}, {info['cpu_count']} cores, jax {info['jax']}, torch {torch.__version__}")
    suites = {"mnist": mnist_suite, "relu": relu_suite}
    results = {}
    for name in args.suites.split(","):
        results.update(suites[name](args))
    body = {"steps": STEPS, "reused_baselines": bool(args.reuse), "suites": results}
    write_result(args.out, "bench_attack_optimality", info, body, args.quick, "-reuse" if args.reuse else "")


if __name__ == "__main__":
    main()
