"""`report.html`: the results as one self-contained page that needs no network to view (plotly.js is
inlined once; no external scripts, styles, fonts or images). The leaderboard is a table that sorts
on a header click and filters on typed words (a few lines of plain JavaScript, no library), then a
forest plot, the learning curves of each task's learners overlaid, and the diagnostics' tables.

`#sort=KEY` (or `#sort=-KEY`, descending) and `&filter=WORDS` in the address sort and filter on
load, so that a link can share a view and a headless browser can check the sorting.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import plotly
from plotly.offline import get_plotlyjs

from imlbench.core.names import DIAGNOSTICS_DIR
from imlbench.core.registry import DIAGNOSTICS
from imlbench.outputs.console import leaderboard_rows, scoring_legend, verdict_sentence
from imlbench.outputs.html_figures import forest, shown_groups, task_curves
from imlbench.store.records import RunRecord
from imlbench.store.results import is_control

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; padding: 0 16px 40px; max-width: 1500px; color: #222; }
h1 { font-size: 24px; margin: 18px 0 6px; } h2 { margin-top: 28px; border-bottom: 1px solid #ddd; }
p.lead { max-width: 1100px; } nav a { margin-right: 14px; }
.tools { margin: 8px 0; } .tools input { font-size: 14px; padding: 4px 8px; width: 340px; }
.scroll { max-height: 560px; overflow: auto; border: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 12px; }
th, td { padding: 3px; border-bottom: 1px solid #e4e4e4; text-align: left; vertical-align: top; }
#board { width: 100%; } #board th { position: sticky; top: 0; background: #f3f3f3; cursor: pointer; z-index: 1; }
#board th[aria-sort=ascending]::after { content: " ▲"; } #board th[aria-sort=descending]::after { content: " ▼"; }
#board td.name { overflow-wrap: break-word; } #board td.learner { min-width: 150px; overflow-wrap: anywhere; }
#board td.ci { white-space: nowrap; }
#board tr.sentence td { color: #555; font-size: 12px; padding: 0 6px 5px 18px; border-bottom: 1px solid #ccc; }
#board tbody.row tr:first-child td { border-bottom: 0; } #board tbody:hover td { background: #f6f9ff; }
td.num { text-align: right; }
.v-IML { color: #1b7837; font-weight: 600; } .v-reverse { color: #762a83; font-weight: 600; }
.v-none { color: #555; } .v-inconclusive { color: #b35806; }
table.diag { margin: 8px 0 18px; } table.diag th { background: #f3f3f3; }
.figure { margin: 12px 0; } code { background: #f3f3f3; padding: 0 3px; }
"""

SCRIPT = """
const table = document.getElementById("board");
const heads = Array.from(table.tHead.rows[0].cells), filter = document.getElementById("filter");
const number = (text) => { const m = /^[-+]?(\\d+\\.?\\d*|\\.\\d+)(e[-+]?\\d+)?/i.exec(text.trim());
  return m ? parseFloat(m[0]) : NaN; };
function sortBy(col, descending) {
  const rows = Array.from(table.tBodies), text = (r) => r.rows[0].cells[col].textContent;
  const cells = rows.map(text);
  const numeric = cells.every((t) => !isNaN(number(t)) || /^[–-]?$/.test(t.trim()));
  const key = (t) => (numeric ? number(t) : t.toLowerCase());
  const sign = descending ? -1 : 1;
  rows.sort((a, b) => { const x = key(text(a)), y = key(text(b));
    if (numeric && (isNaN(x) || isNaN(y))) return isNaN(x) - isNaN(y);
    return x < y ? -sign : x > y ? sign : 0; });
  rows.forEach((r) => table.appendChild(r));
  heads.forEach((h, i) => h.setAttribute("aria-sort", i === col ? (descending ? "descending" : "ascending") : "none"));
}
function applyFilter() {
  const words = filter.value.toLowerCase().split(/\\s+/).filter(Boolean);
  let shown = 0;
  for (const row of table.tBodies) { const text = row.textContent.toLowerCase();
    row.hidden = !words.every((w) => text.includes(w)); shown += !row.hidden; }
  document.getElementById("shown").textContent = `${shown} of ${table.tBodies.length} rows`;
}
heads.forEach((h, i) => h.addEventListener("click", () => sortBy(i, h.getAttribute("aria-sort") === "ascending")));
filter.addEventListener("input", applyFilter);
const wanted = new URLSearchParams(location.hash.slice(1)), sort = wanted.get("sort");
if (sort) { const key = sort.replace(/^-/, ""), keys = heads.map((h) => h.dataset.key);
  const col = keys.indexOf(key) >= 0 ? keys.indexOf(key) : keys.findIndex((k) => k.includes(key));
  if (col >= 0) sortBy(col, sort.startsWith("-")); }
if (wanted.get("filter")) filter.value = wanted.get("filter");
applyFilter();
const figures = JSON.parse(document.getElementById("figures").textContent);
for (const [id, fig] of Object.entries(figures))
  Plotly.newPlot(id, fig.data, fig.layout, {displaylogo: false, responsive: true});
"""


def slug(text: str) -> str:
    """A column's key for `#sort=`: "IML effect [95% CI]" -> "iml-effect-95-ci"."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def read_diagnostics(results_dir: str | Path) -> list[tuple[str, list[str]]]:
    """Each registered diagnostic with a CSV in RESULTS/diagnostics/, in report order, as the
    Markdown lines of its `table(frame)`: the same text as the Markdown report, rendered here."""
    folder = Path(results_dir) / DIAGNOSTICS_DIR
    names = [n for n in DIAGNOSTICS.names() if (folder / f"{n}.csv").exists()]
    names.sort(key=lambda n: (DIAGNOSTICS.get(n).report_order, n))
    return [(n, list(DIAGNOSTICS.get(n).table(pd.read_csv(folder / f"{n}.csv")))) for n in names]


def inline(text: str) -> str:
    """Escaped Markdown text with its `code` spans kept: the diagnostics' tables use nothing else."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(text))


def markdown_html(lines: list[str]) -> str:
    """A diagnostic's Markdown (paragraphs and pipe tables) as HTML; runs of `|` lines make a table."""
    out: list[str] = []
    rows: list[list[str]] = []
    for line in [*lines, ""]:
        if line.lstrip().startswith("|"):
            cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                rows.append(cells)
            continue
        if rows:
            head = "".join(f"<th>{inline(c)}</th>" for c in rows[0])
            body = "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
            out.append(f'<table class="diag"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')
            rows = []
        if line.strip():
            out.append(f"<p>{inline(line)}</p>")
    return "\n".join(out)


def board_table(board: pd.DataFrame, sentences: list[str]) -> str:
    """The leaderboard's display rows (`leaderboard_rows`), each in its own <tbody> with its verdict
    sentence on a line beneath, so that sorting and filtering move a row and its sentence together
    and the sentence is readable without scrolling sideways."""
    rows = leaderboard_rows(board)
    columns = list(rows[0]) if rows else []
    head = "".join(f'<th data-key="{slug(c)}" aria-sort="none">{html.escape(c)}</th>' for c in columns)
    bodies = []
    for row, sentence in zip(rows, sentences, strict=True):
        cells = "".join(f'<td class="{cell_class(c, v)}">{cell_html(c, str(v))}</td>' for c, v in row.items())
        bodies.append(
            f'<tbody class="row"><tr>{cells}</tr>'
            f'<tr class="sentence"><td colspan="{len(columns)}">{html.escape(sentence)}</td></tr></tbody>'
        )
    return f'<table id="board"><thead><tr>{head}</tr></thead>{"".join(bodies)}</table>'


def cell_class(column: str, value: str) -> str:
    """Numbers right-aligned and kept on one line, names wrapped, the verdict coloured."""
    if column == "verdict":
        return f"v-{value}"
    names = {"task": "name", "learner": "name learner", "pipeline": "name"}
    return names.get(column, "num ci" if "CI" in column else "num")


def cell_html(column: str, text: str) -> str:
    """Escaped; a task's or learner's `name[a=1,b=2]` may break after its commas and bracket."""
    escaped = html.escape(text)
    return re.sub(r"([,\[])", r"\1<wbr>", escaped) if column in ("task", "learner") else escaped


def figure_json(figures: dict[str, object]) -> str:
    """The figures as one JSON object, safe inside <script> (no `</` to end it early)."""
    text = "{" + ",".join(f"{json.dumps(k)}:{fig.to_json()}" for k, fig in figures.items()) + "}"
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


def write_html(
    records: list[RunRecord],
    board: pd.DataFrame,
    out_path: str | Path,
    diagnostics: Sequence[tuple[str, list[str]]] = (),
    title: str = "imlbench results",
    margin: float | None = None,
) -> Path:
    """Write the page for scored `records` and their leaderboard `board` (`summarize`); returns its path."""
    ok = [r for r in records if r.ok]
    controls = {(r.task_name, r.learner_name, r.pipeline): is_control(r) for r in ok}
    sentences = [
        verdict_sentence(r) + (" — control" if controls.get((r["task"], r["learner"], r["pipeline"])) else "")
        for _, r in board.iterrows()
    ]
    figures: dict[str, object] = {"forest": forest(board, sentences)} if len(board) else {}
    curves = []
    for i, (task, groups) in enumerate(shown_groups(ok).items()):
        figures[f"curves-{i}"] = task_curves(task, groups)
        curves.append(f'<h3>{html.escape(task)}</h3><div class="figure" id="curves-{i}"></div>')
    diag = "".join(f"<h3>{html.escape(n)}</h3>{markdown_html(lines)}" for n, lines in diagnostics)
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="lead">{len(records)} run records ({len(ok)} finished, {len(records) - len(ok)} failed) in '
        f"{len(board)} leaderboard rows (task × learner × pipeline). Does a learner come to treat "
        f"definitions tagged as reliable as more true than ones tagged as unreliable, and so answer "
        f"questions about them better (implicit meta-learning)? The table says so row by row; click a "
        f"header to sort, type words to filter. {html.escape(scoring_legend(board, margin))}</p>",
        '<nav><a href="#leaderboard">Leaderboard</a><a href="#forest-plot">Forest plot</a>'
        '<a href="#curves">Learning curves</a>' + ('<a href="#diagnostics">Diagnostics</a>' if diag else "") + "</nav>",
        '<h2 id="leaderboard">Leaderboard</h2>',
        '<div class="tools"><input id="filter" type="search" placeholder="filter rows, e.g. transformer IML">'
        ' <span id="shown"></span></div>',
        f'<div class="scroll">{board_table(board, sentences)}</div>',
        "<p>Accuracies in % over each seed's reading window (mean over seeds); s/seed is the wall-clock time "
        "per seed.</p>",
        '<h2 id="forest-plot">Forest plot</h2><div class="figure" id="forest"></div>',
        '<h2 id="curves">Learning curves</h2><p>Per task, each learner and pipeline once (its row without '
        "parameter overrides where there is one); lines are means over the seeds at the checkpoints that at "
        "least half of them reached; solid two-stage, dashed one-stage. Answer scores are taken at the evaluation "
        "point only, so the right panel shows their effect there (mean and 95% t-CI over seeds, at the median "
        "point). Click a legend entry to hide a learner in both.</p>",
        *curves,
        f'<h2 id="diagnostics">Diagnostics</h2><p>Means over seeds with 95% Student-t CIs; n = seeds.</p>{diag}'
        if diag
        else "",
        f"<footer><p>Written by imlbench with Plotly {plotly.__version__} (plotly.js inlined).</p></footer>",
    ]
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head>\n<body>\n'
        + "\n".join(parts)
        + f'\n<script type="application/json" id="figures">{figure_json(figures)}</script>'
        f"\n<script>{SCRIPT}</script>\n</body></html>\n"
    )
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(page, encoding="utf-8")
    return out_path
