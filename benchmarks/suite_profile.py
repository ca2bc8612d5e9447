"""Measurement: where the test suite's time goes, per file: wall seconds, and the seconds XLA spent compiling.

    python benchmarks/suite_profile.py                  # the whole suite, as the README runs it
    python benchmarks/suite_profile.py tests/test_relu.py

Runs `python -m pytest -q --durations=0 [ARGS]` (the project's addopts: two workers, files whole)
with a start-up hook in every Python process of the run (the workers, the CLI subprocesses the
tests start, the notebooks' kernels) that records JAX's own compile-time events
(`jax.monitoring`: tracing, lowering to StableHLO, XLA's backend compile), each with the test that
was running (PYTEST_CURRENT_TEST, which subprocesses inherit). Per file: the seconds its tests took
(setup, call and teardown, summed), XLA's compile seconds and tracing + lowering seconds, and the
slowest tests. The hook adds no work to the suite beyond appending a line per compile.
Results go to benchmarks/results/suite_profile-<time>.json.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# Installed as sitecustomize.py on PYTHONPATH. It must not import jax itself (a test checks that
# the command line answers --help without loading it), so it waits for jax.monitoring to be
# imported and registers the listener then.
HOOK = """
import importlib.abc, importlib.machinery, os, sys

def _listener(event, duration, **kwargs):
    if event.startswith("/jax/core/compile/"):
        test = os.environ.get("PYTEST_CURRENT_TEST", "-").rsplit(" (", 1)[0]
        with open(os.environ["SUITE_PROFILE_LOG"], "a") as log:
            log.write(f"{event.rsplit('/', 1)[-1]}\\t{duration:.4f}\\t{test}\\n")

class _OnJaxMonitoring(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "jax.monitoring":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            module.register_event_duration_secs_listener(_listener)

        spec.loader.exec_module = exec_module
        return spec

if os.environ.get("SUITE_PROFILE_LOG"):
    sys.meta_path.insert(0, _OnJaxMonitoring())
"""

DURATION = re.compile(r"^\s*([0-9.]+)s (setup|call|teardown)\s+(\S+)")


def profile(pytest_args: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="suite-profile-") as folder:
        Path(folder, "sitecustomize.py").write_text(HOOK)
        log = Path(folder, "compiles.tsv")
        log.touch()
        environment = dict(os.environ, SUITE_PROFILE_LOG=str(log))
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [folder, os.environ.get("PYTHONPATH")]))
        start = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "--durations=0", *pytest_args],
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - start
        compiles = [line.split("\t") for line in log.read_text().splitlines()]
    tests = collections.Counter()
    for line in result.stdout.splitlines():
        match = DURATION.match(line)
        if match:
            tests[match.group(3)] += float(match.group(1))
    compile_s, trace_s = collections.Counter(), collections.Counter()
    for event, seconds, test in compiles:
        (compile_s if event == "backend_compile_duration" else trace_s)[test] += float(seconds)
    files: dict[str, dict] = {}
    for test, seconds in tests.items():
        entry = files.setdefault(test.split("::")[0], {"seconds": 0.0, "compile_s": 0.0, "trace_lower_s": 0.0})
        entry["seconds"] += seconds
        entry["compile_s"] += compile_s[test]
        entry["trace_lower_s"] += trace_s[test]
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    return {
        "pytest_args": pytest_args,
        "returncode": result.returncode,
        "pytest_summary": summary,
        "wall_s": wall,
        "test_seconds": sum(tests.values()),
        "compile_s": sum(compile_s.values()),
        "trace_lower_s": sum(trace_s.values()),
        "compiles_over_5s": sum(1 for event, s, _ in compiles if event == "backend_compile_duration" and float(s) > 5),
        "files": dict(sorted(files.items(), key=lambda item: -item[1]["seconds"])),
        "slowest": [
            {"test": test, "seconds": seconds, "compile_s": compile_s[test], "trace_lower_s": trace_s[test]}
            for test, seconds in tests.most_common(30)
        ],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest (default: the whole suite)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args(argv)
    body = profile(args.pytest_args)
    body["xla_flags"] = os.environ.get("XLA_FLAGS", "")  # the suite's conftest adds its defaults to these
    print(body["pytest_summary"])
    print(
        f"wall {body['wall_s']:.0f} s; tests {body['test_seconds']:.0f} worker-s, of which XLA compile "
        f"{body['compile_s']:.0f} s and tracing + lowering {body['trace_lower_s']:.0f} s "
        f"({body['compiles_over_5s']} compiles over 5 s)"
    )
    print(f"{'seconds':>8} {'compile':>8} {'trace':>7}  file")
    for name, entry in body["files"].items():
        print(f"{entry['seconds']:8.0f} {entry['compile_s']:8.0f} {entry['trace_lower_s']:7.0f}  {name}")
    write_result(args.out, "suite_profile", machine(), body, quick=bool(args.pytest_args))
    return 0 if body["returncode"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
