"""One self-contained HTML file: plots embedded, sortable tables, filter by dataset/schedule."""
from __future__ import annotations

import base64
import html
from pathlib import Path

from c2f.report.layout import Table
from c2f.report.runs import Run
from c2f.report.savings import Cell
from c2f.report.tables import cell_text, label, row_order, save_text, single_phase

STYLE = """body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:3px 8px}
th{background:#f0f0f0;cursor:pointer;user-select:none}td.n{text-align:right}
tr.baseline td{font-weight:600}img{max-width:100%;border:1px solid #ddd;margin:4px 0}
.warn{color:#8a5300}.caption{color:#555;max-width:70em}
.bar{background:#f7f7f7;padding:.6em;border:1px solid #ddd}"""

SCRIPT = """
function sortTable(th){const t=th.closest('table'),i=[...th.parentNode.children].indexOf(th);
const asc=th.dataset.asc!=='1';th.dataset.asc=asc?'1':'0';const b=t.tBodies[0];
const key=r=>{const s=r.children[i].textContent.trim(),v=parseFloat(s);return isNaN(v)?s:v};
[...b.rows].sort((x,y)=>{const p=key(x),q=key(y);const c=(typeof p===typeof q)?
(p<q?-1:p>q?1:0):(typeof p==='number'?-1:1);return asc?c:-c}).forEach(r=>b.appendChild(r))}
function applyFilter(){const d=document.getElementById('f-dataset').value,
s=document.getElementById('f-schedule').value;
document.querySelectorAll('[data-dataset]').forEach(e=>{const ok=(!d||e.dataset.dataset===d)&&
(!s||!e.dataset.schedule||e.dataset.schedule===s||e.dataset.schedule==='1');
e.style.display=ok?'':'none'})}
window.addEventListener('load',()=>{const h=new URLSearchParams(location.hash.slice(1));
for(const k of ['dataset','schedule']){if(h.get(k))document.getElementById('f-'+k).value=h.get(k)}
applyFilter();const imgs=[...document.images];
const ok=imgs.filter(i=>i.complete&&i.naturalWidth>0).length;
const s=document.getElementById('status');s.textContent=`${ok}/${imgs.length} plots rendered`;
s.dataset.rendered=ok;s.dataset.total=imgs.length});
"""


def _e(text: object) -> str:
    """HTML-escaped text."""
    return html.escape(str(text))


def _options(element: str, values: list[str]) -> str:
    """A <select> that filters."""
    items = "".join(f'<option value="{_e(v)}">{_e(v)}</option>' for v in values)
    return (f'<label>{element} <select id="f-{element}" onchange="applyFilter()">'
            f'<option value="">all</option>{items}</select></label> ')


def cell_table(cells: list[Cell], criterion: str) -> str:
    """One sortable row per cell and criterion (budget: not single-phase compressed runs,
    which have no savings in the paper's sense: tables.single_phase)."""
    if criterion == "budget":
        cells = [c for c in cells if not single_phase(c)]
    head = ["dataset", "model", "budget", "setting", "schedule", "seeds", "status", "metric"]
    head += ["FLOPs save (%)", "time save (%)"] if criterion == "budget" else []
    rows = []
    for c in sorted(cells, key=lambda c: (c.dataset, c.model, c.budget,
                                          row_order(c.method, c.schedule))):
        tds = [c.dataset, c.model, c.budget, label(c.method, c.schedule), c.schedule, c.seeds,
               c.status_of(criterion), cell_text(c, criterion)]
        if criterion == "budget":
            tds += [save_text(c, c.flops_save), save_text(c, c.time_save)]
        klass = ' class="baseline"' if c.status.startswith("baseline") else ""
        rows.append(f'<tr{klass} data-dataset="{_e(c.dataset)}" data-schedule='
                    f'"{_e(c.schedule)}">' + "".join(f"<td>{_e(v)}</td>" for v in tds) + "</tr>")
    ths = "".join(f'<th onclick="sortTable(this)">{_e(h)}</th>' for h in head)
    return (f'<table id="cells-{criterion}" class="sortable"><thead><tr>{ths}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def paper_tables(tables: list[Table]) -> str:
    """The paper-layout tables, as in tables.md, each with its caption."""
    parts = []
    for table in tables:
        ths = "".join(f'<th onclick="sortTable(this)">{_e(h)}</th>' for h in table.header)
        body = "".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>"
                       for row in table.rows)
        parts.append(f'<h3 id="{_e(table.slug)}">{_e(table.title)}</h3>'
                     f'<p class="caption">{_e(table.caption)}</p>'
                     f'<table class="sortable paper-layout" data-table="{_e(table.key)}">'
                     f"<thead><tr>{ths}</tr></thead><tbody>{body}</tbody></table>")
    return "".join(parts)


def images_html(images: list[Path], runs: list[Run]) -> str:
    """The PNGs inlined as data URIs, tagged with their dataset for the filter."""
    parts = []
    for image in images:
        # the longest name that fits: `builtin_multilabel`'s plots are not `builtin`'s
        dataset = max((r.dataset for r in runs if f"_{r.dataset}_" in image.name), key=len,
                      default="")
        data = base64.b64encode(image.read_bytes()).decode()
        parts.append(f'<figure data-dataset="{_e(dataset)}"><img alt="{_e(image.stem)}" '
                     f'src="data:image/png;base64,{data}"></figure>')
    return "".join(parts)


def write_dashboard(path: Path, tables: list[Table], cells: list[Cell], runs: list[Run],
                    images: list[Path], warnings: list[str], selection: str = "") -> Path:
    """Write the dashboard (`selection`: which runs --where kept, said under the title);
    returns its path."""
    datasets = sorted({c.dataset for c in cells})
    schedules = sorted({c.schedule for c in cells}, key=lambda s: row_order("fshift", s))
    warn = "".join(f'<li class="warn">{_e(w)}</li>' for w in warnings) or "<li>none</li>"
    body = (f"<h1>Coarse-to-fine savings</h1><p>{len(runs)} runs, {len(cells)} cells. "
            "Metrics and savings in percent; ± = sample std (n - 1) over seeds (and folds); "
            "n/r = not reached."
            f' {_e(selection)} <span id="status"></span></p>'
            f'<div class="bar">{_options("dataset", datasets)}{_options("schedule", schedules)}'
            "</div><h2>Budget criterion</h2>" + cell_table(cells, "budget")
            + "<h2>Convergence criterion</h2>" + cell_table(cells, "convergence")
            + "<h2>Plots</h2>" + images_html(images, runs)
            + "<h2>Tables in the paper's layout (c2f's numbers, the paper's beside)</h2>"
            + paper_tables(tables)
            + f"<h2>Warnings</h2><ul>{warn}</ul>")
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f"<title>c2f savings report</title><style>{STYLE}</style>"
            f"<script>{SCRIPT}</script></head><body>{body}</body></html>\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page)
    return path
