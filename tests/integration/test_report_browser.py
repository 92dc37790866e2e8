"""The HTML report of a two-run fleet in headless Chromium: it loads without script errors and without fetching
anything, shows the trend charts, sorts a column on click and filters rows.

MADCI_REPORT_SCREENSHOT=<path.png> also saves a screenshot of the page (docs/images/report-two-runs.png is one).
"""

from __future__ import annotations

import os

import pytest
from fleet_rows import MODELS, node_rows
from webdriver import chromium

from ansible_collections.rocm.madengine.plugins.modules import madengine_report

H100 = dict(gpu_product="NVIDIA H100 80GB HBM3", gpu_architecture="sm_90", metric="samples_per_second")
HOSTS = ["mi300x-1", "mi300x-2", "h100-1"]


def fleet(run_id, day, dummy):
    """Two MI300X nodes and one H100 node; ``dummy`` is the MI300X nodes' figure of the dummy model."""
    results = {}
    for node, perf in (("mi300x-1", 100.0), ("mi300x-2", 104.0), ("h100-1", 180.0)):
        rows = [dict(r, run_id=run_id, start_time="2026-11-%02dT10:%02d:00Z" % (day, n),
                     end_time="2026-11-%02dT10:%02d:30Z" % (day, n), **(H100 if node.startswith("h100") else {}))
                for n, r in enumerate(node_rows(node, perf=perf, fail=["dummy2/model2"] if node == "h100-1"
                                                and day == 2 else ()))]
        if node.startswith("mi300x"):
            rows[0]["performance"] = repr(dummy * perf / 100.0)
        results[node] = rows
    return results


@pytest.fixture(scope="module")
def report_page(tmp_path_factory):
    from conftest import run_module

    out = tmp_path_factory.mktemp("report") / "results"
    for run_id, day, dummy in (("20261101T100000Z-1a2b3c", 1, 100.0), ("20261102T100000Z-4d5e6f", 2, 80.0)):
        result = run_module(madengine_report, {"results": fleet(run_id, day, dummy), "models": MODELS, "hosts": HOSTS,
                                               "output_dir": str(out), "title": "MI300X and H100 fleet",
                                               "run_id": run_id})
        assert not result.failed, result
    assert result["summary"]["verdicts"] == {"regressed": 2, "improved": 0, "unchanged": 15, "no baseline": 0}
    return out / "perf.html"


def column(browser, table, index):
    return browser.run("var index = arguments[1];"
                       " return Array.prototype.map.call(document.querySelectorAll(arguments[0] + ' tbody tr'),"
                       " function (r) { return r.cells[index].textContent; });", table, index)


def visible_rows(browser, table):
    return browser.run("return Array.prototype.filter.call(document.querySelectorAll(arguments[0] + ' tbody tr'),"
                       " function (r) { return r.offsetParent !== null; }).map(function (r) {"
                       " return r.textContent; });", table)


def test_the_report_in_headless_chromium(report_page):
    with chromium(width=1280, height=1320) as browser:
        browser.open("file://%s" % report_page)
        assert browser.errors() == []
        assert browser.run("return performance.getEntriesByType('resource').length;") == 0
        assert browser.run("return document.title;") == "MI300X and H100 fleet"
        if os.environ.get("MADCI_REPORT_SCREENSHOT"):
            browser.screenshot(os.environ["MADCI_REPORT_SCREENSHOT"])

        # the charts are there and drawn: one per model line, each a line through both runs
        charts = browser.run(
            "return Array.prototype.map.call(document.querySelectorAll('svg.trend'), function (svg) {"
            " var box = svg.querySelector('polyline').getBBox();"
            " return [svg.querySelectorAll('circle').length, svg.getBoundingClientRect().width, box.width]; });")
        assert len(charts) == 12 and all(width > 100 for _points, width, _line in charts)
        # every model line has both runs, but dummy2/model2 of the H100 node, which failed in the second run
        assert sorted((points, line > 50) for points, _width, line in charts) == [(1, False)] + [(2, True)] * 11
        headings = browser.run("return Array.prototype.map.call(document.querySelectorAll('h2[id^=class]'),"
                               " function (h) { return h.firstChild.textContent.trim(); });")
        assert headings == ["AMD Instinct MI300X (gfx942)", "NVIDIA H100 80GB HBM3 (sm_90)"]
        assert column(browser, "table.models", 7)[0] == "regressed"

        # sorting the "value" column of all rows, then the other way
        values = column(browser, "#all-rows", 4)
        numbers = sorted(float(v) for v in values if v)
        browser.click("#all-rows thead th:nth-child(5)")
        assert browser.errors() == []
        ascending = column(browser, "#all-rows", 4)
        assert [float(v) for v in ascending if v] == numbers and ascending[-1] == ""  # empty values last
        assert browser.run("return document.querySelector('#all-rows thead th:nth-child(5)')"
                           ".getAttribute('aria-sort');") == "ascending"
        browser.click("#all-rows thead th:nth-child(5)")
        assert [float(v) for v in column(browser, "#all-rows", 4) if v] == numbers[::-1]

        # filtering: words, then a verdict
        browser.type("#filter-text", "h100-1")
        shown = visible_rows(browser, "#all-rows")
        assert len(shown) == 6 and all("h100-1" in text for text in shown)
        browser.run("var s = document.getElementById('filter-text'); s.value = '';"
                    " s.dispatchEvent(new Event('input'));"
                    " var v = document.getElementById('filter-verdict'); v.value = 'regressed';"
                    " v.dispatchEvent(new Event('change'));")
        shown = visible_rows(browser, "#all-rows")
        assert len(shown) == 2 and all(text.startswith("dummymi300x-") for text in shown)
        assert browser.errors() == []


def test_the_error_hook_sees_script_errors(tmp_path):
    """The check above can fail: a page whose script throws is caught."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><script>undefinedFunction();</script></body></html>")
    with chromium() as browser:
        browser.open("file://%s" % page)
        assert browser.errors() == ["Uncaught ReferenceError: undefinedFunction is not defined"]
