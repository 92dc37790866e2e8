"""The HTML report: self-contained, grouped by GPU class, regressions first, trend charts, log links, escaping.

The page's script is exercised in headless Chromium by tests/integration/test_report_browser.py.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest
from fleet_rows import MODELS, node_rows, row

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark import baseline as _baseline
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark import history as _history
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark import report as _report
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark import report_html as _html
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark import results_db as _db
from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError

H100 = dict(gpu_product="NVIDIA H100 80GB HBM3", gpu_architecture="sm_90")


class Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def run_rows(run_id, day, dummy=100.0):
    results = {}
    for host in ("node1", "node2"):
        results[host] = [dict(r, run_id=run_id, start_time="2026-11-%02dT10:00:00Z" % day)
                         for r in node_rows(host, perf=100.0)]
        results[host][0]["performance"] = repr(dummy)
    results["node3"] = [dict(r, run_id=run_id, start_time="2026-11-%02dT10:00:00Z" % day, **H100)
                        for r in node_rows("node3", perf=300.0)]
    return results


def render(db, results, run_id, models=MODELS, **kwargs):
    policy = _baseline.Policy()
    report = _report.merge(results, models=models)
    run_ids = _history.row_run_ids(report.rows, run_id)
    sources = _baseline.gather(db, report.rows, run_ids, "2026-12-01T00:00:00Z", policy)
    comparison = _baseline.compare(report, sources, policy, base_model=_report.Pair(MODELS).base)
    if db is not None:
        db.store(_history.runs_of_rows(report.rows, run_id, "2026-12-01T00:00:00Z"))
    page = _html.to_html(report, kwargs.pop("title", "Fleet"), run_id, comparison=comparison,
                         database={"location": "/r/history.sqlite", "error": None}, **kwargs)
    return page.decode("utf-8")


@pytest.fixture
def db(tmp_path):
    opened = _db.open_db(_db.parse_location("", str(tmp_path)))
    yield opened
    opened.close()


def class_tables(page):
    """{GPU class heading: [(model, verdict) of its model lines, in order]}."""
    found = {}
    for heading, body in re.findall(r'<h2 id="class-\d+">(.*?) <span.*?<tbody>(.*?)</tbody>', page, re.S):
        found[heading] = re.findall(r'data-verdict="([^"]*)">\s*<td>([^<]*)</td>', body)
    return found


def test_two_runs_grouped_by_gpu_class_with_regressions_first_and_trends(db):
    render(db, run_rows("r1", 1), "r1")
    page = render(db, run_rows("r2", 2, dummy=80.0), "r2")
    tables = class_tables(page)
    assert list(tables) == ["AMD Instinct MI300X (gfx942)", "NVIDIA H100 80GB HBM3 (sm_90)"]
    # dummy regressed on MI300X: first line of its class, although it is not first in model order
    assert tables["AMD Instinct MI300X (gfx942)"][0] == ("regressed", "dummy")
    assert [v for v, _m in tables["NVIDIA H100 80GB HBM3 (sm_90)"]] == ["unchanged"] * 6
    assert 'id="regressions">Regressions (2)</h2>' in page
    assert "<td>dummy</td><td>node1</td><td>AMD Instinct MI300X (gfx942)</td>" in page
    # one trend chart per model line, two points each (r1 then r2), the current run marked
    charts = re.findall(r'<svg class="trend".*?</svg>', page)
    assert len(charts) == 12
    for chart in charts:
        ET.fromstring(chart)
    dummy = next(c for c in charts if 'aria-label="dummy over 2 runs"' in c and ">100<" in c)
    assert re.findall(r'<circle class="(\w+)"', dummy) == ["base", "now"]
    assert "<title>r1: 100</title>" in dummy and "<title>r2: 80</title>" in dummy
    assert "-20.00" in page and ">regressed<" in page


def test_page_is_self_contained_and_escapes_what_rows_bring(tmp_path):
    nasty = row("<b>m</b>", "n&1", "FAILURE", error="<script>alert(1)</script>", log_path="/x/<i>.log")
    page = render(None, {"n&1": [nasty]}, "r<1>", title="Fleet <run>")
    parser = Tags()
    parser.feed(page)
    tags = [tag for tag, _attrs in parser.tags]
    assert not set(tags) & {"link", "img", "iframe", "object", "embed"}
    scripts = [attrs for tag, attrs in parser.tags if tag == "script"]
    assert scripts == [{}]  # one inline script, nothing fetched
    assert not re.search(r'\bsrc=', page) and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "<title>Fleet &lt;run&gt;</title>" in page and "run r&lt;1&gt;" in page
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;m&lt;/b&gt;" in page and 'href="file:///x/%3Ci%3E.log"' in page


def test_log_links(tmp_path):
    out = str(tmp_path)
    local = row("dummy", "node1", performance=1.0, log_path=str(tmp_path / "node1" / "dummy.log"))
    remote = row("dummy", "node2", performance=1.0, log_path="/var/tmp/madengine/dummy.log")
    page = render(None, {"node1": [local], "node2": [remote]}, "r", output_dir=out)
    assert '<a href="node1/dummy.log">log</a>' in page  # under the report's directory: relative
    assert '<a href="file:///var/tmp/madengine/dummy.log">log</a>' in page
    page = render(None, {"node2": [remote]}, "r", log_url="https://logs.lab/{host}/{run_id}/{log_name}")
    assert '<a href="https://logs.lab/node2/run-node2/dummy.log">log</a>' in page
    with pytest.raises(MadengineError, match=r"log_url 'https://x/\{node\}' is not a valid template \('node'\); it"
                                             r" may use \{host\}, \{log_path\}"):
        render(None, {"node2": [remote]}, "r", log_url="https://x/{node}")


def test_same_inputs_same_bytes_and_an_empty_report():
    results = run_rows("r1", 1)
    assert render(None, results, "r1") == render(None, dict(reversed(list(results.items()))), "r1")
    page = render(None, {"node1": []}, "r", models=())
    assert "<p>No rows.</p>" in page and "No results from: node1" in page


def test_missing_node_rows_take_the_class_of_nothing_and_failures_are_listed():
    results = run_rows("r1", 1)
    results["node2"][1]["status"] = "TIMEOUT"
    results["node9"] = []
    page = render(None, results, "r1")
    assert "no GPU recorded" in page  # node9's placeholder rows: no GPU known
    assert '<h2 id="failures">Failures and skips (4)</h2>' in page
    assert '<tr class="missing"><td>node9</td>' in page


@pytest.mark.parametrize("value", ["plain", "<b>&'\"x</b>", "a & b", 3.25, None, "", "ünï"])
def test_row_cells_are_escaped_as_the_template_escapes(value):
    markupsafe = pytest.importorskip("markupsafe")
    assert _html.escape_cell(value) == str(markupsafe.escape(str(value)))
