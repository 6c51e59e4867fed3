"""The leaderboard as one self-contained HTML page: sortable tables (inline JavaScript), plots
inlined as base64 PNG, no external asset or URL, so the file can be mailed or published as is.

Sorting: click a column header (again to reverse). ``?sort=KEY&order=asc|desc&table=ID`` sorts on
load (KEY is a column's ``data-key``, e.g. ``digits-lt:top1``; ID defaults to ``main``), which makes
an order reproducible from a link.
"""

from __future__ import annotations

import base64
from html import escape

from gaia_bench.plugins.reporters.lib.leaderboard import Leaderboard
from gaia_bench.plugins.reporters.lib.tables import Grid, leaderboard_grids, summary_lines

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em; color: #1b1f24; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { padding: 0.25em 0.6em; border-bottom: 1px solid #d0d7de; white-space: nowrap; }
thead tr:last-child th { border-bottom: 2px solid #1b1f24; cursor: pointer; user-select: none; }
thead tr.groups th { border-bottom: 1px solid #8c959f; text-align: center; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th[aria-sort="ascending"]::after { content: " \\25B2"; } th[aria-sort="descending"]::after { content: " \\25BC"; }
tbody tr:hover { background: #f6f8fa; }
section.reference { border-left: 4px solid #bf8700; padding-left: 1em; background: #fffbea; }
.notes { font-size: 0.85em; color: #57606a; } img { max-width: 100%; }
code { background: #f6f8fa; padding: 0 0.3em; }
"""

_JS = """
(function () {
  function value(row, index) {
    var cell = row.cells[index];
    var v = cell.getAttribute('data-value');
    return v === null || v === '' ? null : parseFloat(v);
  }
  function sortTable(table, index, descending) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var numeric = rows.some(function (r) { return value(r, index) !== null; });
    rows.sort(function (a, b) {
      if (numeric) {
        var x = value(a, index), y = value(b, index);
        if (x === null && y === null) return 0;
        if (x === null) return 1;
        if (y === null) return -1;
        return descending ? y - x : x - y;
      }
      var s = a.cells[index].textContent, t = b.cells[index].textContent;
      return descending ? t.localeCompare(s) : s.localeCompare(t);
    });
    rows.forEach(function (r) { body.appendChild(r); });
    var heads = table.tHead.rows[table.tHead.rows.length - 1].cells;
    for (var i = 0; i < heads.length; i++) heads[i].removeAttribute('aria-sort');
    heads[index].setAttribute('aria-sort', descending ? 'descending' : 'ascending');
  }
  function headers(table) { return table.tHead.rows[table.tHead.rows.length - 1].cells; }
  var tables = document.querySelectorAll('table.sortable');
  Array.prototype.forEach.call(tables, function (table) {
    Array.prototype.forEach.call(headers(table), function (th, index) {
      th.addEventListener('click', function () {
        var current = th.getAttribute('aria-sort');
        var descending = current ? current === 'ascending' : th.getAttribute('data-better') === 'higher';
        sortTable(table, index, descending);
      });
    });
  });
  var params = new URLSearchParams(window.location.search);
  var key = params.get('sort');
  var table = document.getElementById(params.get('table') || 'main');
  if (key && table) {
    var heads = headers(table);
    for (var i = 0; i < heads.length; i++) {
      if (heads[i].getAttribute('data-key') === key) {
        var order = params.get('order');
        sortTable(table, i, order ? order === 'desc' : heads[i].getAttribute('data-better') === 'higher');
      }
    }
  }
})();
"""


def _text(text: str) -> str:
    """Escaped text; `code` spans become <code>."""
    pieces = [escape(p) for p in text.split("`")]
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(pieces))


def _table(grid: Grid) -> str:
    parts = [f'<table id="{escape(grid.id)}" class="sortable"><thead>']
    if any(c.group for c in grid.columns):
        spans: list[tuple[str, int]] = []
        for c in grid.columns:
            if spans and spans[-1][0] == c.group and c.group:
                spans[-1] = (c.group, spans[-1][1] + 1)
            else:
                spans.append((c.group, 1))
        parts.append('<tr class="groups">' + "".join(f'<th colspan="{n}">{escape(g)}</th>' for g, n in spans) + "</tr>")
    heads = []
    for c in grid.columns:
        better = ("higher" if c.higher_is_better else "lower") if c.numeric else "text"
        heads.append(f'<th data-key="{escape(c.key)}" data-better="{better}" title="click to sort">{escape(c.label)}</th>')
    parts.append("<tr>" + "".join(heads) + "</tr></thead><tbody>")
    for row in grid.rows:
        tds = []
        for c, cell in zip(grid.columns, row):
            attrs = ' class="num"' if c.numeric else ""
            if cell.value is not None:
                attrs += f' data-value="{cell.value!r}"'
            text = f"<strong>{escape(cell.text)}</strong>" if cell.strong else escape(cell.text)
            tds.append(f"<td{attrs}>{text}</td>")
        parts.append("<tr>" + "".join(tds) + "</tr>")
    parts.append("</tbody></table>")
    return "".join(parts)


def _section(grid: Grid, plot: bytes | None) -> str:
    css = ' class="reference"' if grid.id.startswith("references") else ""
    notes = "".join(f"<li>{_text(n)}</li>" for n in grid.notes)
    body = _table(grid) if grid.rows else "<p>(none)</p>"
    img = ""
    if plot:
        img = f'<p><img alt="{escape(grid.title)} plot" src="data:image/png;base64,{base64.b64encode(plot).decode()}"></p>'
    return f'<section id="section-{escape(grid.id)}"{css}><h2>{escape(grid.title)}</h2>{body}<ul class="notes">{notes}</ul>{img}</section>'


def render_html(board: Leaderboard, plots: dict[str, bytes]) -> str:
    grids = leaderboard_grids(board)
    plot_for = {"efficiency": plots.get("data_efficiency.png"), "speed": plots.get("speed_accuracy.png")}
    nav = " · ".join(f'<a href="#section-{escape(g.id)}">{escape(g.title)}</a>' for g in grids)
    header = "".join(f"<li>{_text(line)}</li>" for line in summary_lines(board))
    sections = "\n".join(_section(g, plot_for.get(g.id)) for g in grids)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(board.title)}</title><style>{_CSS}</style></head>\n<body>"
        f"<h1>{escape(board.title)}</h1><ul class=\"notes\">{header}</ul><nav>{nav}</nav>\n{sections}\n"
        f"<p class=\"notes\">Click a column header to sort; add <code>?sort=KEY&amp;order=desc</code> to the address to sort on load.</p>"
        f"<script>{_JS}</script></body></html>\n"
    )
