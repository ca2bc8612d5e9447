"""The documentation: the site builds with every link and API page resolved, the README keeps its
promises, and the worked example runs."""

import os
import re
import subprocess
import sys

from helpers import ROOT


def test_the_site_builds_strictly(tmp_path):
    """`mkdocs build --strict`: a broken link, a missing page or an API page that does not resolve fails."""
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        capture_output=True, text=True, cwd=ROOT, timeout=600, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    for page in ("api/attacks", "api/compression", "api/models", "api/datasets", "api/experiments", "api/store"):
        text = (tmp_path / "site" / page / "index.html").read_text()
        assert 'class="doc doc-object' in text, page  # mkdocstrings rendered the module
    assert "def minimal_l2" not in (tmp_path / "site" / "api/attacks/index.html").read_text()  # no source dump
    assert "minimal_l2" in (tmp_path / "site" / "api/attacks/index.html").read_text()


def test_the_readme_is_a_landing_page():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 260
    lines = text.splitlines()
    first_table = next(k for k, line in enumerate(lines) if line.startswith("| claim |"))
    sections = [k for k, line in enumerate(lines) if line.startswith("## ")]
    assert sections[0] < first_table < sections[1] and first_table < 40  # the verdict table opens it
    assert "| **Theorem 1**:" in text and "| **Table 5 (compression)**:" in text and "Beyond the paper" in text
    assert "pip install -e ." in text and "python -m pytest -q" in text
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text) + re.findall(r'<img src="([^"]+)"', text)
    assert len(images) >= 2  # the scaling law and the MNIST gallery
    for image in images:
        assert (ROOT / image).is_file(), image
    for link in re.findall(r"\]\((docs/[^)#]+)", text):
        assert (ROOT / link).is_file(), link
    for page in (text, (ROOT / "docs" / "ledger" / "verdicts.md").read_text()):  # an empty cell is empty
        rows = [line for line in page.splitlines() if line.startswith("| **")]
        assert rows and not [row for row in rows if re.search(r"\bnan\b", row)]


def test_the_worked_example_attacks_an_exported_model(tmp_path):
    result = subprocess.run(
        [sys.executable, "docs/examples/own_model.py", "--out", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    assert "the minimal L2 attack moves x by" in result.stdout and (tmp_path / "net.onnx").is_file()
    assert "does (certified)" in result.stdout  # the certified radius, below the attack's norm (asserted inside)


def test_the_readme_library_example_runs():
    text = (ROOT / "README.md").read_text()
    block = text.split("## As a library", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict = {}
    exec(block, scope)  # noqa: S102  (the README's own example, as a reader would paste it)
    assert bool(scope["attack"].success) and float(scope["attack"].norm) > 0
    assert scope["path"].cos.shape == (11,)
    assert 0 < float(scope["bound"].radius) <= float(scope["attack"].norm)  # the certified radius, below the attack
