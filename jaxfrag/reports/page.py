"""report.html: one self-contained page per run folder, readable offline with no server and no script.

Contract: `write(path)` reads a run folder (any study) and writes `path/report.html` atomically:
the command that made the run and its environment (jaxfrag version, git commit, packages, devices),
the verdict rows the run can decide (`jaxfrag.reports.verdicts`, in a table with id "verdicts"), the
run's tables (every CSV it wrote), and every figure under figures/ embedded as a PNG data URI, so the
page is one file that opens anywhere. `page(path)` returns the HTML without writing it.
"""

from __future__ import annotations

import base64
import html
import json
import shlex
from pathlib import Path

import pandas as pd

from jaxfrag import stats, store
from jaxfrag.reports import verdicts

PAGE = "report.html"
TABLES = ("summary.csv", "claims.csv", "measures.csv", "slopes.csv", "paired.csv")
MAX_TABLE_ROWS = 400  # longer tables are cut on the page (the CSV beside it has every row)
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 75em; padding: 0 1em; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.holds { background: #e6f4ea; } td.fails { background: #fce8e6; }
td.conditional { background: #fef7e0; } td.untested { background: #f1f3f4; }
td.undecided { background: #e8eaf6; }
figure { display: inline-block; margin: 0 1em 1em 0; max-width: 100%; }
figure img { max-width: 100%; border: 1px solid #ddd; }
pre, code { background: #f6f8fa; } pre { padding: 0.75em; overflow-x: auto; font-size: 0.8em; }
.scroll { overflow-x: auto; }
"""
VERDICT_CLASS = {
    verdicts.HOLDS: "holds",
    verdicts.FAILS: "fails",
    verdicts.CONDITIONAL: "conditional",
    verdicts.UNDECIDED: "undecided",
    verdicts.UNTESTED: "untested",
}


def _e(value) -> str:
    return html.escape(str(value))


def _command(meta: dict) -> str:
    command = meta.get("command")
    if isinstance(command, list) and command:
        return shlex.join(map(str, command))
    try:
        return verdicts.command_of(meta, verdicts.study_of(meta))
    except ValueError:
        return "(not recorded)"


def _verdict_table(path: Path) -> str:
    try:
        table = verdicts.records(verdicts.claims(path))
    except (ValueError, KeyError) as error:
        return f'<table id="verdicts"><tr><td>no claim decided here: {_e(error)}</td></tr></table>'
    if table.empty:
        return '<table id="verdicts"><tr><td>this run decides none of the paper\'s claims</td></tr></table>'
    head = "".join(f"<th>{h}</th>" for h in ("claim", "the paper", "ours [interval]", "n", "test", "verdict"))
    head = f"<tr>{head}</tr>"
    body = []
    for _, row in table.iterrows():
        ours = stats.format_estimate(row["estimate"], low=row["low"], high=row["high"], spec="+.3f")
        conditions = f"<br>{_e(row['conditions'])}" if row["conditions"] else ""
        body.append(
            f"<tr><td><b>{_e(row['claim'])}</b>: {_e(row['statement'])}</td><td>{_e(row['paper'])}</td>"
            f"<td>{_e(ours)}<br><small>{_e(row['statistic'])}; {_e(row['interval'])}</small></td>"
            f"<td>{int(row['n'])}</td>"
            f"<td>{_e(verdicts.band(row))}</td>"
            f'<td class="{VERDICT_CLASS[row["verdict"]]}"><b>{_e(row["verdict"])}</b>{conditions}</td></tr>'
        )
    return f'<table id="verdicts">{head}{"".join(body)}</table><p><small>{_e(verdicts.RULE_TEXT)}</small></p>'


def _csv_table(path: Path) -> str:
    frame = pd.read_csv(path)
    cut = len(frame) > MAX_TABLE_ROWS
    shown = frame.head(MAX_TABLE_ROWS).to_html(index=False, float_format=lambda x: f"{x:.4g}", border=0)
    note = f"<p>first {MAX_TABLE_ROWS} of {len(frame)} rows; {path.name} has them all</p>" if cut else ""
    summary = f"<summary>{_e(path.name)} ({len(frame)} rows)</summary>"
    return f'<details>{summary}<div class="scroll">{shown}</div>{note}</details>'


def _figures(path: Path) -> str:
    figures = sorted((path / "figures").rglob("*.png")) if (path / "figures").is_dir() else []
    if not figures:
        return "<p>no figures</p>"
    parts = []
    for figure in figures:
        name = figure.relative_to(path).as_posix()
        data = base64.b64encode(figure.read_bytes()).decode("ascii")
        image = f'<img src="data:image/png;base64,{data}" alt="{_e(name)}">'
        parts.append(f"<figure>{image}<figcaption>{_e(name)}</figcaption></figure>")
    return "".join(parts)


def _environment(meta: dict) -> str:
    facts = {
        "jaxfrag": meta.get("jaxfrag_version", "(not recorded)"),
        "git commit": meta.get("git_commit", "(not a git checkout)")
        + (" (with local changes)" if meta.get("git_dirty") else ""),
        "started": meta.get("started", ""),
        "finished": meta.get("finished", ""),
        "processes": meta.get("processes", ""),
        "devices": ", ".join(meta.get("devices", meta.get("jax_devices", []))),
    }
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts.items() if v != "")
    details = {key: meta[key] for key in ("environment", "jax_environment", "config") if key in meta}
    text = json.dumps(details, indent=1, default=str) if details else ""
    return f"<table>{rows}</table><details><summary>config and packages</summary><pre>{_e(text)}</pre></details>"


def page(path: str | Path) -> str:
    path = Path(path)
    meta = json.loads((path / store.META).read_text())
    tables = "".join(_csv_table(path / name) for name in TABLES if (path / name).exists())
    return f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>jaxfrag run {_e(path.name)}</title><style>{STYLE}</style></head>
<body>
<h1>jaxfrag run <code>{_e(path.name)}</code></h1>
<p>Made by <code>{_e(_command(meta))}</code></p>
<h2>Verdicts</h2>
{_verdict_table(path)}
<h2>Figures</h2>
{_figures(path)}
<h2>Tables</h2>
{tables or "<p>no tables</p>"}
<h2>Environment</h2>
{_environment(meta)}
</body>
</html>
"""


def write(path: str | Path) -> Path:
    """Write `path/report.html` (atomically) and return its path."""
    path = Path(path)
    target = path / PAGE
    store.atomic_write_text(target, page(path))
    return target
