"""Shared test helpers: cached runners, so each compiled program is built once per session."""

import functools
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np

from jaxfrag import parallel
from jaxfrag.config import Config
from jaxfrag.experiments import registry
from jaxfrag.xla_options import runtime_bound

# jax.jit for a test's programs that run for seconds (a CNN's passes over many inputs, rounds of
# branch and bound): optimised, not at the suite's level 0 for programs that run once and briefly
# (conftest): they compile longer and run several times faster (docs/performance.md, the suite's time).
long_running_jit = functools.partial(jax.jit, compiler_options=runtime_bound())


@functools.cache
def runner(config: Config, num_devices: int = 2) -> parallel.CellRunner:
    return parallel.CellRunner(config, parallel.make_mesh(jax.devices()[:num_devices]))


def run_cell(name: str, d: int, config: Config, num_devices: int = 2, chunk: int | None = None):
    """One cell's CellResult with the given config."""
    return runner(config, num_devices).run_cell(registry()[name], d, chunk)


@functools.cache
def numpy_signs(d: int) -> np.ndarray:
    """(2^d, d): z for point index i, z_j = 2 bit_j(i) - 1 (independent of jaxfrag.data; cached: read-only)."""
    return np.array([[1.0 if (i >> j) & 1 else -1.0 for j in range(d)] for i in range(2**d)])


def fisher_p(p_values) -> float:
    """Fisher's combination of independent p-values."""
    from scipy import stats

    p_values = np.clip(np.asarray(p_values, float), 1e-300, 1)
    return float(stats.chi2.sf(-2 * np.sum(np.log(p_values)), 2 * len(p_values)))


ROOT = Path(__file__).resolve().parents[1]


def sweep(*args, check=True, timeout=600, env=None):
    """Run `python -m jaxfrag.sweep --no-progress ARGS` in a subprocess, as a user would (`env`: its environment)."""
    result = subprocess.run(
        [sys.executable, "-m", "jaxfrag.sweep", "--no-progress", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        env=env,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# Process 1 starts planning seconds after process 0 (a slow start on a busy machine).
PLAN_LATE = """
import time
from jaxfrag import stages
plan = stages.plan
def late(request, folder, runner, experiments, processes, *rest, **options):
    if processes.index == 1:
        time.sleep(8)
    return plan(request, folder, runner, experiments, processes, *rest, **options)
stages.plan = late
"""


def launch_processes(module: str, args, count: int, before: str = "") -> list[subprocess.Popen]:
    """`python -m MODULE ARGS` as `count` local processes joined by jax.distributed, one CPU device each;
    `before`: Python code each process runs first (to slow one down, say)."""
    import os

    coordinator = f"127.0.0.1:{free_port()}"
    environment = {**os.environ, "JAX_NUM_CPU_DEVICES": "1"}
    start = ["-c", f"{before}\nimport runpy; runpy.run_module({module!r}, run_name='__main__', alter_sys=True)"]
    return [
        subprocess.Popen(
            [sys.executable, *(start if before else ["-m", module]), "--no-progress", *map(str, args)]
            + ["--coordinator", coordinator, "--num-processes", str(count), "--process-id", str(index)],
            cwd=ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for index in range(count)
    ]


class _PageParser:
    """What tests/check_report_page needs of a report.html, read with the standard library's HTML parser."""

    def __init__(self, text: str):
        from html.parser import HTMLParser

        self.images, self.tables, self.scripts, self.links, self.verdict_rows = [], [], 0, [], 0
        page = self
        inside_verdicts = []

        class Parser(HTMLParser):
            def handle_starttag(self, tag, attrs):
                attrs = dict(attrs)
                if tag == "img":
                    page.images.append(attrs)
                if tag == "table":
                    page.tables.append(attrs.get("id"))
                    inside_verdicts.append(attrs.get("id") == "verdicts")
                if tag == "tr" and inside_verdicts and inside_verdicts[-1]:
                    page.verdict_rows += 1
                if tag == "script":
                    page.scripts += 1
                for name in ("src", "href"):
                    if attrs.get(name):
                        page.links.append(attrs[name])

            def handle_endtag(self, tag):
                if tag == "table" and inside_verdicts:
                    inside_verdicts.pop()

        Parser().feed(text)


def check_report_page(run: Path, min_verdict_rows: int = 1) -> None:
    """A run folder's report.html: one verdict table with rows, every figure under figures/ embedded as
    a PNG whose bytes are the file's, no script, nothing fetched from elsewhere."""
    import base64

    page = _PageParser((run / "report.html").read_text())
    assert page.tables.count("verdicts") == 1, page.tables
    assert page.verdict_rows >= 1 + min_verdict_rows, page.verdict_rows  # the header row, then the claims
    figures = sorted((run / "figures").rglob("*.png")) if (run / "figures").is_dir() else []
    assert len(page.images) == len(figures)
    embedded = {image["alt"]: image["src"] for image in page.images}
    for figure in figures:
        source = embedded[figure.relative_to(run).as_posix()]
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1]) == figure.read_bytes()
    assert page.scripts == 0
    assert all(link.startswith("data:") for link in page.links), page.links
