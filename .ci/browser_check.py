"""Open run folders' report.html in headless Chromium and check what a reader sees.

    python .ci/browser_check.py RUN [RUN ...]

For each page: a copy with a small probe script appended is loaded from a file:// URL (no server,
nothing fetched); after the page settles the probe writes, into the DOM that Chromium dumps, how
many images there are, how many failed to decode (a broken image has naturalWidth 0), and whether
the verdict table is present and has rows. The page itself carries no script. Exit status 1 on any
broken image, a missing verdict table or a page without figures where the run has them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PROBE = """
<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const broken = images.filter((img) => !(img.complete && img.naturalWidth > 0)).map((img) => img.alt);
  const table = document.getElementById("verdicts");
  const result = {
    images: images.length,
    broken: broken,
    verdict_table: table !== null,
    verdict_rows: table ? table.querySelectorAll("tr").length - 1 : 0,
  };
  const out = document.createElement("pre");
  out.id = "browser-check";
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
});
</script>
"""


def browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return name
    sys.exit("no Chromium found (Debian: apt-get install chromium)")


def check(run: Path, chromium: str) -> list[str]:
    page = run / "report.html"
    if not page.is_file():
        return [f"{run}: no report.html"]
    with tempfile.TemporaryDirectory() as scratch:
        probe = Path(scratch) / "report.html"
        probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
        dom = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
             "--dump-dom", probe.as_uri()],
            capture_output=True, text=True, timeout=120,
        ).stdout  # fmt: skip
    found = re.search(r'<pre id="browser-check">(.*?)</pre>', dom, re.S)
    if not found:
        return [f"{run}: the page did not finish loading in Chromium"]
    result = json.loads(found.group(1).replace("&quot;", '"'))
    figures = len(list((run / "figures").rglob("*.png"))) if (run / "figures").is_dir() else 0
    problems = []
    if result["broken"]:
        problems.append(f"{run}: broken images: {', '.join(result['broken'])}")
    if result["images"] != figures:
        problems.append(f"{run}: the page shows {result['images']} images, figures/ holds {figures}")
    if not result["verdict_table"] or result["verdict_rows"] < 1:
        problems.append(f"{run}: no verdict table")
    print(f"{run}: {result['images']} images, all decoded: {not result['broken']}; "
          f"verdict table with {result['verdict_rows']} rows")  # fmt: skip
    return problems


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    chromium = browser()
    problems = [problem for run in argv for problem in check(Path(run), chromium)]
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
