# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""The Jinja2 template of the HTML report, with its style sheet and script.

A Python constant, not a template file: modules reach the controller as one zip of Python files, which holds
module_utils Python files only. The page is self-contained: inline CSS, SVG and script, nothing fetched.
"""

from __future__ import annotations

STYLE = """
:root{--bad:#c62828;--good:#2e7d32;--warn:#ef6c00;--mute:#757575;--line:#e0e0e0;--head:#f5f5f5}
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5em 2em;color:#212121}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ccc}
h3{font-size:1.05em;margin:1.2em 0 .3em}
.meta{color:#555;margin:.2em 0}.error{color:var(--bad);font-weight:600}
.tiles{display:flex;flex-wrap:wrap;gap:.6em;margin:.8em 0}
.tile{border:1px solid var(--line);border-radius:6px;padding:.4em .9em;min-width:6.5em}
.tile b{display:block;font-size:1.5em}.tile.hot{border-color:var(--bad);background:#ffebee}
table{border-collapse:collapse;margin:.4em 0;font-size:.88em}
th,td{border:1px solid var(--line);padding:.2em .5em;text-align:left;vertical-align:middle}
th{background:var(--head)}table.sortable th{cursor:pointer;user-select:none;white-space:nowrap}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.SUCCESS,.improved{color:var(--good)}.FAILURE,td.regressed,span.regressed{color:var(--bad);font-weight:600}
.TIMEOUT{color:var(--warn)}.SKIPPED,.unchanged,.nobaseline{color:var(--mute)}
tr.missing td{background:#ffebee}tr.regressed td{background:#fff5f5}tr.regressed td:first-child{font-weight:600}
.filters{position:sticky;top:0;background:#fff;padding:.5em 0;border-bottom:1px solid var(--line);z-index:1}
.filters input{width:22em}.filters label{margin-right:1em}
svg.trend{display:block}svg.trend .line{fill:none;stroke:#1565c0;stroke-width:1.5}
svg.trend .base{fill:#fff;stroke:#6a1b9a;stroke-width:1.5}svg.trend .now{fill:#1565c0}
svg.trend .pt{fill:#90caf9}svg.trend text{font-size:9px;fill:#555}
.muted{color:var(--mute)}a{color:#1565c0}
"""

SCRIPT = r"""
(function () {
  "use strict";
  function sortKey(cell) {
    var raw = cell.hasAttribute("data-v") ? cell.getAttribute("data-v") : cell.textContent.trim();
    var number = raw === "" ? NaN : Number(raw);
    return isNaN(number) ? {n: null, s: raw.toLowerCase()} : {n: number, s: raw};
  }
  function compare(a, b) {
    if (a.n !== null && b.n !== null) { return a.n - b.n; }
    if (a.n !== null) { return -1; }
    if (b.n !== null) { return 1; }
    if (a.s === b.s) { return 0; }
    if (a.s === "") { return 1; }
    if (b.s === "") { return -1; }
    return a.s < b.s ? -1 : 1;
  }
  function sortBy(table, heading, column) {
    var ascending = heading.getAttribute("aria-sort") !== "ascending";
    var headings = table.tHead.rows[0].cells;
    for (var h = 0; h < headings.length; h++) { headings[h].removeAttribute("aria-sort"); }
    heading.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var body = table.tBodies[0];
    var keyed = Array.prototype.map.call(body.rows, function (row, index) {
      return {key: sortKey(row.cells[column]), index: index, row: row};
    });
    keyed.sort(function (a, b) {
      var order = compare(a.key, b.key);
      return order === 0 ? a.index - b.index : (ascending ? order : -order);
    });
    var fragment = document.createDocumentFragment();
    keyed.forEach(function (entry) { fragment.appendChild(entry.row); });
    body.appendChild(fragment);
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (heading, column) {
      heading.addEventListener("click", function () { sortBy(table, heading, column); });
    });
  });
  var text = document.getElementById("filter-text");
  var verdict = document.getElementById("filter-verdict");
  function applyFilter() {
    var words = text.value.toLowerCase().split(/\s+/).filter(Boolean);
    var wanted = verdict.value;
    Array.prototype.forEach.call(document.querySelectorAll("table.filterable tbody tr"), function (row) {
      var haystack = row.textContent.toLowerCase();
      var shown = words.every(function (word) { return haystack.indexOf(word) >= 0; }) &&
        (wanted === "" || row.getAttribute("data-verdict") === wanted);
      row.style.display = shown ? "" : "none";
    });
  }
  if (text && verdict) {
    text.addEventListener("input", applyFilter);
    verdict.addEventListener("change", applyFilter);
  }
}());
"""

TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title><style>{{ style | safe }}</style></head>
<body>
{%- macro link(href, text) -%}
{% if href %}<a href="{{ href }}">{{ text }}</a>{% else %}{{ text }}{% endif %}
{%- endmacro -%}
{%- macro css(word) %}{{ word | replace(" ", "") }}{% endmacro -%}
{%- macro trend(c) -%}
{% if c %}<svg class="trend" xmlns="http://www.w3.org/2000/svg" width="{{ c.width }}" height="{{ c.height }}" \
viewBox="0 0 {{ c.width }} {{ c.height }}" role="img" aria-label="{{ c.label }}"><title>{{ c.label }}</title>\
<text x="0" y="9">{{ c.top }}</text><text x="0" y="{{ c.height - 1 }}">{{ c.bottom }}</text>\
<polyline class="line" points="{{ c.points }}"/>\
{% for p in c.marks %}<circle class="{{ p.kind }}" cx="{{ p.x }}" cy="{{ p.y }}" r="{{ p.r }}">\
<title>{{ p.title }}</title></circle>{% endfor %}</svg>\
{% else %}<span class="muted">no history</span>{% endif %}
{%- endmacro %}
<h1>{{ title }}</h1>
<p class="meta">run {{ run_id }} &middot; {{ rows_total }} rows from {{ node_count }} nodes &middot; {{ span }}</p>
<p class="meta">baseline: {{ baseline }} &middot; history: {{ database.location or "none" }}
{%- if database.error %} &middot; <span class="error">results database not used: {{ database.error }}</span>
{%- endif %}</p>
<div class="tiles">
{%- for status, count in counts %}
<div class="tile"><span class="{{ status }}">{{ status }}</span><b>{{ count }}</b></div>
{%- endfor %}
{%- for verdict, count in verdicts %}
<div class="tile{% if verdict == 'regressed' and count %} hot{% endif %}">\
<span class="{{ css(verdict) }}">{{ verdict }}</span><b>{{ count }}</b></div>
{%- endfor %}
</div>
{% if missing_nodes %}<p class="error">No results from: {{ missing_nodes | join(", ") }}</p>{% endif %}
<div class="filters"><label>Filter \
<input id="filter-text" type="search" placeholder="model, node, GPU, status..."></label>\
<label>Verdict <select id="filter-verdict"><option value="">any</option>\
{% for verdict, _count in verdicts %}<option>{{ verdict }}</option>{% endfor %}</select></label></div>
{% if regressions %}
<h2 id="regressions">Regressions ({{ regressions | length }})</h2>
<table class="sortable filterable"><thead><tr><th>model</th><th>node</th><th>GPU</th><th>metric</th>\
<th>value</th><th>baseline</th><th>change %</th><th>threshold %</th><th>baseline run</th><th>log</th></tr>\
</thead><tbody>
{% for r in regressions %}<tr class="regressed" data-verdict="regressed"><td>{{ r.model }}</td>\
<td>{{ r.host }}</td><td>{{ r.gpu }}</td><td>{{ r.metric }}</td><td class="num">{{ r.performance }}</td>\
<td class="num">{{ r.baseline }}</td><td class="num regressed">{{ r.relative_change }}</td>\
<td class="num">{{ r.threshold }}</td><td>{{ r.baseline_run_id }}</td><td>{{ link(r.log, "log") }}</td></tr>
{% endfor %}</tbody></table>
{% endif %}
{% for group in classes %}
<h2 id="class-{{ loop.index }}">{{ group.label }} <span class="muted">&middot; \
{{ group.nodes | length }} node{{ "s" if group.nodes | length != 1 }}: {{ group.nodes | join(", ") }}</span></h2>
<table class="sortable filterable models"><thead><tr><th>model</th><th>args</th><th>metric</th><th>ok/rows</th>\
<th>value</th><th>baseline</th><th>change %</th><th>verdict</th><th>trend (last {{ trend_runs }} runs)</th>\
<th>log</th></tr></thead><tbody>
{% for m in group.models %}<tr{% if m.verdict == "regressed" %} class="regressed"{% endif %} \
data-verdict="{{ m.verdict }}">\
<td>{{ m.model }}</td><td>{{ m.args }}</td>\
<td>{{ m.metric }} <span class="muted" title="{{ m.direction }} is better">{{ m.arrow }}</span></td>\
<td class="num" data-v="{{ m.ok }}">{{ m.ok }}/{{ m.total }}</td><td class="num">{{ m.value }}</td>\
<td class="num">{{ m.baseline }}</td><td class="num {{ css(m.verdict) }}">{{ m.change }}</td>\
<td class="{{ css(m.verdict) }}" data-v="{{ m.rank }}">{{ m.verdict_text }}</td>\
<td>{{ trend(m.chart) }}</td><td>{{ link(m.log, "log") }}</td></tr>
{% endfor %}</tbody></table>
{% endfor %}
<h2 id="nodes">Nodes</h2>
<table class="sortable"><thead><tr><th>node</th><th>rows</th>{% for s in statuses %}<th>{{ s }}</th>{% endfor %}\
<th>GPU product</th><th>GPU architecture</th></tr></thead><tbody>
{% for n in nodes %}<tr{% if n.missing %} class="missing"{% endif %}><td>{{ n.host }}</td>\
<td class="num">{{ n.rows }}</td>{% for c in n.by_status %}<td class="num">{{ c }}</td>{% endfor %}\
<td>{{ n.product }}</td><td>{{ n.arch }}</td></tr>
{% endfor %}</tbody></table>
<h2 id="failures">Failures and skips ({{ problems | length }})</h2>
{% if problems %}<table class="sortable filterable"><thead><tr><th>model</th><th>node</th><th>status</th>\
<th>error</th><th>log</th></tr></thead><tbody>
{% for r in problems %}<tr data-verdict=""><td>{{ r.model }}</td><td>{{ r.host }}</td>\
<td class="{{ r.status }}">{{ r.status }}</td><td>{{ r.error }}</td><td>{{ link(r.log, r.log_path) }}</td></tr>
{% endfor %}</tbody></table>{% endif %}
<h2 id="rows">All rows ({{ rows_total }})</h2>
{% if rows %}<table id="all-rows" class="sortable filterable"><thead><tr><th>model</th><th>node</th><th>GPU</th>\
<th>status</th><th>value</th><th>metric</th><th>baseline</th><th>change %</th><th>verdict</th><th>run</th>\
<th>start</th><th>log</th></tr></thead><tbody>
{{ all_rows | safe }}</tbody></table>{% else %}<p>No rows.</p>{% endif %}
<script>{{ script | safe }}</script>
</body></html>
"""

# One line of the "All rows" table; the cells are escaped by report_html.escape_cell. Written out in Python rather
# than in the template's loop because the table has a line per result (10,000 in a large run), and Jinja2's
# per-cell escaping is then most of the report's time.
ROW_LINE = ('<tr data-verdict="{8}"><td>{0}</td><td>{1}</td><td>{2}</td><td class="{3}">{3}</td>'
            '<td class="num">{4}</td><td>{5}</td><td class="num">{6}</td><td class="num">{7}</td>'
            '<td class="{12}">{8}</td><td>{9}</td><td>{10}</td><td>{11}</td></tr>\n')
LOG_LINK = '<a href="{0}">log</a>'
