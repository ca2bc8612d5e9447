"""One command line: the `jaxfrag` script and its subcommands, and options that mean one thing everywhere."""

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

import jaxfrag
from jaxfrag import __main__ as command_line
from jaxfrag import cli, decide, imagenet, mnist, report, sweep, verdicts
from jaxfrag.config import ATTACKS
from jaxfrag.models import __main__ as models_main

RUNS = {"sweep": sweep.build_parser, "mnist": mnist.build_parser, "imagenet": imagenet.build_parser}
OTHERS = {
    "export": models_main.build_parser,
    "verdicts": verdicts.build_parser,
    "decide": decide.build_parser,
    "report": report.build_parser,
}
# The options every run command has, with one name, help and default.
SHARED = ("--out", "--resume", "--progress", "--cache-dir", "--coordinator", "--num-processes", "--process-id")
SHARED += ("--peer-timeout",)
SEEDED = ("sweep", "mnist")  # imagenet draws nothing at random, so it has no --seed
# The one exception to "one name, one help, one default": each command's own model has its own
# training (the sweep's small nets with --optimizer, mnist's CNN with Adadelta) and default attack
# (the small nets: full, which strong does not shorten there; the CNN: strong), so its own defaults.
MODEL_OPTIONS = ("--epochs", "--lr")
DEFAULT_DIFFERS = ("--attack",)


def parsers(builders) -> dict[str, argparse.ArgumentParser]:
    return {name: build(f"jaxfrag {name}") for name, build in builders.items()}


def options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {flag: action for action in parser._actions for flag in action.option_strings if flag.startswith("--")}


def _described(action: argparse.Action) -> tuple:
    """What a user sees of an option: its help, its default, how its value is read."""
    kind = getattr(action.type, "__qualname__", repr(action.type))
    return action.help, action.default, kind, action.nargs, type(action).__name__


def mismatches(found: dict[str, argparse.ArgumentParser]) -> list[str]:
    """Options that share a name across commands but differ in help, default or type."""
    seen: dict[str, tuple[str, tuple]] = {}
    problems = []
    for name, parser in found.items():
        for flag, action in options(parser).items():
            if flag == "--help" or flag in MODEL_OPTIONS:
                continue
            described = _described(action)
            if flag in DEFAULT_DIFFERS:  # the same help, type and choices; its own default
                described = (*described[:1], *described[2:], tuple(action.choices))
            if flag in seen and seen[flag][1] != described:
                problems.append(f"{flag}: {seen[flag][0]} {seen[flag][1]} vs {name} {described}")
            seen.setdefault(flag, (name, described))
    return problems


def test_shared_options_have_one_name_help_and_default_in_every_command():
    found = parsers(RUNS)
    assert mismatches({**found, **parsers(OTHERS)}) == []
    for name, parser in found.items():
        flags = options(parser)
        assert set(SHARED) <= set(flags), name
        assert ("--seed" in flags) == (name in SEEDED), name
    assert "--eps-max" not in {flag for parser in found.values() for flag in options(parser)}
    assert "--fgsm-eps-max" in options(found["mnist"]) and "--kurakin-eps-max" in options(found["imagenet"])
    assert "--image-dirs" in options(found["imagenet"]) and "--images" not in options(found["imagenet"])


def test_a_shared_option_that_drifts_is_caught(monkeypatch):
    original = cli.add_run_options

    def drifted(parser, command, seed=True):
        original(parser, command, seed)
        if command == "mnist":
            next(a for a in parser._actions if "--seed" in a.option_strings).help = "a seed"

    monkeypatch.setattr(cli, "add_run_options", drifted)
    assert any(problem.startswith("--seed") for problem in mismatches(parsers(RUNS)))


@pytest.mark.parametrize("name", [*RUNS, *OTHERS])
def test_help_shows_defaults_and_ends_with_two_examples(name):
    parser = {**RUNS, **OTHERS}[name](f"jaxfrag {name}")
    formatter = cli.HelpFormatter(parser.prog)
    for action in parser._actions:
        shown = action.option_strings and action.default not in (None, False, argparse.SUPPRESS)
        if shown and action.default is not True:
            assert "default" in formatter._get_help_string(action), (name, action.option_strings)
    text = parser.format_help()
    examples = text.split("examples:\n", 1)[1].strip().splitlines()
    assert len(examples) == 2 and all(line.strip().startswith(f"jaxfrag {name} ") for line in examples)
    assert parser.prog == f"jaxfrag {name}"


def _script() -> str:
    return str(Path(sys.executable).parent / "jaxfrag")


def test_the_jaxfrag_script_dispatches_to_every_subcommand():
    version = subprocess.run([_script(), "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.strip() == f"jaxfrag {jaxfrag.__version__}"
    top = subprocess.run([_script(), "--help"], capture_output=True, text=True, timeout=60)
    assert top.returncode == 0 and all(f"  {name} " in top.stdout for name in command_line.COMMANDS)
    for name in command_line.COMMANDS:
        sub = subprocess.run([_script(), name, "--help"], capture_output=True, text=True, timeout=60)
        assert sub.returncode == 0 and sub.stdout.startswith(f"usage: jaxfrag {name} "), (name, sub.stderr)
    unknown = subprocess.run([_script(), "sweeep"], capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 2 and unknown.stderr.strip() == (
        "jaxfrag: error: unknown command 'sweeep'; choose from sweep, mnist, imagenet, export, verdicts, decide, report"
    )
    bad = subprocess.run([_script(), "sweep", "--d", "9..4"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith("jaxfrag sweep: error: ") and bad.stderr.count("\n") == 1


def test_resume_needs_a_named_run_folder():
    with pytest.raises(cli.UsageError, match="--resume"):
        sweep.parse_args(["--d", "8", "--resume"])
    args = sweep.parse_args(["--d", "8"])
    assert Path(args.out).parent == Path("runs") and Path(args.out).name.startswith("sweep-")


def test_a_missing_extra_is_one_line_naming_it(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "flax" else real(name, *a))
    with pytest.raises(cli.UsageError, match=r"jaxfrag mnist needs the 'mnist' extra \(flax not installed\)"):
        mnist.parse_args(["--out", "x"])


def test_mnist_attack_default_is_the_experiments_and_is_recorded():
    from jaxfrag import attacks
    from jaxfrag.experiments import mnist as experiment

    args = mnist.parse_args(["--out", "x"])
    assert args.attack == experiment.ATTACK == "strong" and set(attacks.PRESETS) == set(ATTACKS)
    assert mnist.run_config(args, "digest")["attack"] == "strong"  # resuming with another attack is refused
    assert mnist.run_config(mnist.parse_args(["--out", "x", "--attack", "walk"]), "digest")["attack"] == "walk"


@pytest.mark.parametrize("command", ["mnist", "sweep", "grid"])
def test_a_run_records_its_attacks_options_so_a_changed_preset_cannot_resume_it(command, monkeypatch):
    from jaxfrag import attacks

    if command == "mnist":
        config = lambda: mnist.run_config(mnist.parse_args(["--out", "x", "--attack", "strong"]), "digest")  # noqa: E731
    else:
        argv = ["--out", "x", "--experiment", "relu", "--d", "7"]
        argv += ["--attack", "strong"] if command == "sweep" else ["--grid", "attack=quick,strong"]
        config = lambda: sweep.run_config(sweep.parse_args(argv))  # noqa: E731
    now = config()
    strong = now["attack_options"]["strong"]
    assert strong == {**strong, **attacks.PRESETS["strong"]} and strong["restarts"] == attacks.RESTARTS
    # The same preset's name with other options (as `strong` had four ALMA lanes) is another config,
    # which the run folder refuses to resume.
    monkeypatch.setitem(attacks.PRESETS, "strong", dict(alma_lanes=4))
    earlier = config()
    assert earlier["attack_options"]["strong"]["alma_lanes"] == 4 and earlier != now


def test_a_sweep_without_trained_experiments_records_no_attack():
    args = sweep.parse_args(["--out", "x", "--experiment", "thm1", "--d", "7"])
    assert "attack_options" not in sweep.run_config(args)


def test_imagenet_attack_step_defaults_are_the_attacks():
    from jaxfrag import attacks, imagenet

    parser = imagenet.build_parser()
    assert parser.get_default("restarts") == attacks.RESTARTS  # the full attack by default
    assert parser.get_default("rescue_starts") == attacks.RESCUE_STARTS
    assert parser.get_default("walk_steps") == attacks.WALK_STEPS
    assert parser.get_default("lane_walk_steps") == attacks.LANE_WALK_STEPS
    assert parser.get_default("ddn_steps") == attacks.DDN_STEPS
