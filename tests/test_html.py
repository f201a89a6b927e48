"""The results page `report.html`: built from a small real results folder, checked as HTML, then
loaded in headless Chromium (Debian's package), which must run its scripts offline: the table
sorts and filters from the address, and every Plotly figure draws its SVG."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from plotly.offline import get_plotlyjs

import imlbench
from imlbench.outputs.html import markdown_html, read_diagnostics, slug, write_html
from imlbench.outputs.html_figures import shown_groups, task_curves
from imlbench.outputs.report import report
from imlbench.scoring.runs import load_results
from imlbench.scoring.verdicts import summarize

PUBLISHED = Path(__file__).resolve().parents[1] / "docs" / "results"
RF = {"n_entities": 100, "n_estimators": 10, "stage2_estimators": 10}
CHROMIUM = shutil.which("chromium")


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """rf and the majority control, two seeds each, two-stage and one-stage (about 8 s)."""
    out = tmp_path_factory.mktemp("results")
    for learner, params in (("rf", RF), ("majority", {"n_entities": 100})):
        imlbench.run(learner=learner, seeds=2, pipeline=["two-stage", "one-stage"], params=params, out=out)
    return out


@pytest.fixture(scope="module")
def page(results, tmp_path_factory) -> tuple[Path, list[str]]:
    """The page as `imlbench report` writes it (beside report.md), and the leaderboard's learners in order."""
    out = tmp_path_factory.mktemp("report") / "report.md"
    report(results, out)
    board = summarize([r for r in load_results(results) if r.ok])
    return out.with_name("report.html"), list(board["learner"])


class Tags(HTMLParser):
    """Every start tag with its attributes (script and style bodies are not parsed as tags)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))


def tags(text: str) -> list[tuple[str, dict[str, str]]]:
    parser = Tags()
    parser.feed(text)
    return parser.tags


def test_report_writes_one_self_contained_page_beside_the_markdown(page):
    path, learners = page
    text = path.read_text(encoding="utf-8")
    found = tags(text)
    loads = [a.get(k, "") for _, a in found for k in ("src", "href", "data", "srcset", "poster")]
    assert not [u for u in loads if re.match(r"\s*(https?:)?//", u)], "the page must load nothing from the network"
    assert not [t for t, a in found if t == "link" or (t == "script" and "src" in a)], "no external script or style"
    assert text.count(get_plotlyjs()[:200]) == 1, "plotly.js is inlined exactly once"
    assert len(text) < len(get_plotlyjs()) + 1_000_000, "the figures' data are small (aggregated over seeds)"
    rows = [a for t, a in found if t == "tbody" and a.get("class") == "row"]
    assert len(rows) == len(learners) == 4
    keys = [a["data-key"] for t, a in found if t == "th" and "data-key" in a]
    assert {"task", "learner", "pipeline", "iml-effect-95-ci", "verdict"} <= set(keys)
    assert text.count('<tr class="sentence">') == 4, "each row's verdict sentence beneath it"
    figures = json.loads(re.search(r'<script type="application/json" id="figures">(.*?)</script>', text, re.S)[1])
    divs = {a["id"] for t, a in found if t == "div" and "id" in a}
    assert set(figures) == {"forest", "curves-0"} and set(figures) <= divs
    # one accuracy curve per learner and pipeline; the answer score of rf's two-stage runs (majority has none)
    assert len(figures["curves-0"]["data"]) == 5
    assert '<h2 id="diagnostics">' not in text, "no diagnostics here: no empty section"


def test_curves_show_answer_scores_only_where_records_have_them(results):
    records = [r for r in load_results(results) if r.ok]

    def with_logprob(value) -> dict:
        return shown_groups([dataclasses.replace(r, scores={**r.scores, "logprob_effect": value(r)}) for r in records])

    (task, groups), *_ = with_logprob(lambda r: math.nan).items()
    figure = task_curves(task, groups)
    assert len(figure.data) == 4 and {t.xaxis for t in figure.data} == {"x"}, "no answer scores: one panel"
    figure = task_curves(task, with_logprob(lambda r: 0.5 + r.seed)[task])
    assert len(figure.data) == 8 and {t.xaxis for t in figure.data} == {"x", "x2"}
    point = [t for t in figure.data if t.xaxis == "x2"][0]
    assert point.y == (1.0,) and point.error_y.array[0] > 0  # mean of 0.5 and 1.5, with its CI


def test_markdown_tables_become_html_tables():
    text = markdown_html(["Intro with `code` & <tag>.", "", "| a | b \\| c |", "|---|---|", "| 1 | x |"])
    assert "<p>Intro with <code>code</code> &amp; &lt;tag&gt;.</p>" in text
    assert "<th>a</th><th>b | c</th>" in text and "<td>1</td><td>x</td>" in text
    assert slug("IML effect [95% CI]") == "iml-effect-95-ci"


def test_diagnostics_tables_are_rendered(results, tmp_path):
    """The published diagnostics' CSVs (their table code is theirs; here they are only rendered)."""
    csvs = sorted((PUBLISHED / "diagnostics").glob("*.csv"))
    if not csvs:
        pytest.skip("this checkout has no published diagnostics (docs/results/diagnostics/*.csv)")
    (tmp_path / "diagnostics").mkdir()
    for csv in csvs:
        shutil.copyfile(csv, tmp_path / "diagnostics" / csv.name)
    diagnostics = read_diagnostics(tmp_path)
    assert {name for name, _ in diagnostics} == {csv.stem for csv in csvs}
    records = load_results(results)
    text = write_html(records, summarize([r for r in records if r.ok]), tmp_path / "page.html", diagnostics)
    text = text.read_text(encoding="utf-8")
    assert '<h2 id="diagnostics">' in text and text.count('<table class="diag">') >= len(csvs)
    assert all(f"<h3>{csv.stem}</h3>" in text for csv in csvs)


def test_write_html_without_diagnostics_or_rows_still_writes_a_page(results, tmp_path):
    records = load_results(results)
    board = summarize([r for r in records if r.ok])
    assert read_diagnostics(tmp_path) == []
    path = write_html(records, board.iloc[:0], tmp_path / "empty.html")
    assert "0 leaderboard rows" in path.read_text(encoding="utf-8")


def chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    """Headless Chromium with name resolution switched off, so that the page must work offline."""
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"]
    command += [f"--user-data-dir={profile}", "--host-resolver-rules=MAP * ~NOTFOUND", "--hide-scrollbars"]
    command += ["--virtual-time-budget=10000", "--window-size=1400,2400", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


@pytest.mark.skipif(CHROMIUM is None, reason="no `chromium` on PATH: install Debian's chromium to run the browser test")
def test_page_renders_sorts_and_filters_in_headless_chromium(page, tmp_path):
    path, learners = page
    url = path.resolve().as_uri()
    dom = chromium(["--dump-dom", f"{url}#sort=-learner&filter=two-stage"], tmp_path / "profile").stdout
    bodies = re.findall(r'<tbody class="row"( hidden="")?>(.*?)</tbody>', dom, re.S)
    assert len(bodies) == len(learners), "one table row per leaderboard row"
    order = [re.findall(r"<td[^>]*>(.*?)</td>", body)[1] for _, body in bodies]
    names = [re.sub(r"<wbr>", "", name) for name in order]
    assert names == sorted(names, reverse=True), "sorted on load by #sort=-learner"
    assert re.search(r'data-key="learner" aria-sort="descending"', dom)
    shown = [body for hidden, body in bodies if not hidden]
    assert len(shown) == 2 and all("two-stage" in body for body in shown), "filtered on load by &filter="
    assert ">2 of 4 rows<" in dom
    for figure in ("forest", "curves-0"):
        start = dom.index(f'id="{figure}"')
        end = min(i for i in (dom.find("<h2", start), dom.find("<h3", start), dom.find("<script", start)) if i > 0)
        assert 'class="main-svg"' in dom[start:end], f"Plotly drew no SVG in #{figure}"
    shot = tmp_path / "page.png"
    chromium([f"--screenshot={shot}", url], tmp_path / "profile")
    assert shot.stat().st_size > 20_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
