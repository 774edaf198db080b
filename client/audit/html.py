"""The HTML report: one self-contained page, no server and nothing fetched.

The page holds the summary (counts and shares per status, the fees owed, the top rights
holders), two charts drawn as inline SVG (items by status; fees owed by rights holder), and
a table of the items with a search box (a few lines of inline script hide the rows that do
not contain the text searched for). The table holds every registered item, then the
others, up to :data:`MAX_TABLE_ROWS` rows in all, so that a browser can still open the page
of a large audit; the page then says how many rows it leaves out (the CSV, JSON and parquet
reports hold every row).

Everything from the input or the chain (item names, legal URIs) is escaped.
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from typing import TYPE_CHECKING

from client.audit.classify import AuditRow, Status, Summary
from client.commands.common import format_amount

if TYPE_CHECKING:
    from client.audit.report import ReportInfo

__all__ = ["MAX_TABLE_ROWS", "page_head", "page_tail", "table_row"]

MAX_TABLE_ROWS = 20_000  # (a page of ~8 MB)
TOP_IN_CHART = 10
COLOURS = {
    Status.NOT_REGISTERED: "#9aa0a6", Status.NO_TERMS: "#f2b84b", Status.NOT_ALLOWED: "#d9534f",
    Status.ALLOWED: "#3c9d5d", Status.CONSTRAINED: "#4a7fc1", Status.LICENSED: "#7b5ea7",
}
TABLE_HEADINGS = ("item", "sha256", "status", "work", "owner", "terms", "fee", "royalty",
                  "expiry (blocks)", "supply left", "license", "legal text", "match")

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:80rem;padding:0 1rem;
color:#222}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem}
code,.hash{font-family:ui-monospace,monospace;font-size:12px}
.partial{background:#fff3cd;border:1px solid #e0b252;padding:.6rem 1rem;font-weight:600}
dl.meta{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem}
dl.meta dt{font-weight:600}dl.meta dd{margin:0;word-break:break-all}
table{border-collapse:collapse}th,td{padding:.25rem .6rem;border-bottom:1px solid #e4e4e4;
text-align:left;vertical-align:top}td.n,th.n{text-align:right}
.swatch{display:inline-block;width:.8rem;height:.8rem;margin-right:.4rem;border-radius:2px}
figure{margin:1.2rem 0}figcaption{font-weight:600;margin-bottom:.3rem}
#rows td{max-width:22rem;overflow-wrap:anywhere}
input[type=search]{width:100%;max-width:40rem;padding:.4rem;font-size:14px;margin:.5rem 0}
"""

_SCRIPT = """
(function(){
  var box=document.getElementById('q'),shown=document.getElementById('shown');
  var rows=Array.prototype.slice.call(document.querySelectorAll('#rows tbody tr'));
  var text=rows.map(function(r){return r.textContent.toLowerCase();});
  box.addEventListener('input',function(){
    var q=box.value.trim().toLowerCase(),n=0;
    for(var i=0;i<rows.length;i++){var hit=!q||text[i].indexOf(q)>=0;rows[i].hidden=!hit;
      if(hit){n++;}}
    shown.textContent=n;
  });
})();
"""


def page_head(info: ReportInfo, summary: Summary, table_rows: int, total_rows: int) -> str:
    """The page up to the table's first row."""
    title = f"Opus audit of {info.source}"
    parts = [
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
        f"<title>{escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n",
        "<h1>Opus audit</h1>\n",
    ]
    if not info.complete:
        parts.append(f"<p class=\"partial\" id=\"partial\">Partial report: the audit was "
                     f"stopped after {summary.rows:,} rows (the input's first rows). Run it "
                     "again for a complete report.</p>\n")
    parts.append(_meta(info))
    parts.append(_summary(summary))
    parts.append(_holders(summary))
    left_out = total_rows - table_rows
    note = (f" It leaves out {left_out:,} rows that were not registered: the CSV, JSON and "
            "parquet reports hold every row." if left_out else "")
    parts.append(
        f"<h2>Items</h2>\n<p>{table_rows:,} of {total_rows:,} rows, registered items first; "
        f"<span id=\"shown\">{table_rows}</span> shown.{note}</p>\n"
        "<input id=\"q\" type=\"search\" placeholder=\"Search items, hashes, owners, "
        "statuses…\" aria-label=\"Search the items\">\n"
        "<table id=\"rows\">\n<thead><tr>"
        + "".join(f"<th>{h}</th>" for h in TABLE_HEADINGS) + "</tr></thead>\n<tbody>\n")
    return "".join(parts)


def page_tail() -> str:
    """The page after the table's last row."""
    return f"</tbody>\n</table>\n<script>{_SCRIPT}</script>\n</body>\n</html>\n"


def table_row(row: AuditRow) -> str:
    """One item as a table row (one line)."""
    fee = "" if row.fee is None else format_amount(row.fee)
    royalty = "" if row.royalty_bps is None else f"{row.royalty_bps / 100:g}%"
    if row.terms_id is None:
        expiry = supply = ""
    else:
        expiry = "never" if not row.expiry_blocks else f"{row.expiry_blocks:,}"
        supply = "unlimited" if row.supply_left is None else f"{row.supply_left:,}"
    cells = (escape(row.item), f"<span class=\"hash\">{row.sha256}</span>",
             f"<span class=\"swatch\" style=\"background:{COLOURS[row.status]}\"></span>"
             f"{row.status.text}", _number(row.work_id), row.owner or "",
             _number(row.terms_id), fee, royalty, expiry, supply, _number(row.license_id),
             escape(row.legal_uri or ""), _match(row))
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>\n"


def _match(row: AuditRow) -> str:
    """How the item was found: by content hash, or as a near-duplicate at a distance."""
    if row.distance is None:
        return row.match
    return f"{row.match}, distance {row.distance}"


def _number(value: int | None) -> str:
    return "" if value is None else str(value)


def _meta(info: ReportInfo) -> str:
    rows = [("Input", escape(info.source)),
            ("Audited at block", f"#{info.block_number} <code>{info.block_hash}</code>"),
            ("Licensee", escape(info.licensee) if info.licensee else "none given"),
            ("Started", escape(info.audited_at)),
            ("Near-duplicates", "not looked up" if info.near_max_distance is None else
             f"looked up by PDQ fingerprint, within {info.near_max_distance} bits"),
            ("Report", "complete" if info.complete else "partial")]
    return ("<dl class=\"meta\">\n"
            + "".join(f"<dt>{k}</dt><dd>{v}</dd>\n" for k, v in rows) + "</dl>\n")


def _summary(summary: Summary) -> str:
    lines = ["<h2>Summary</h2>\n<table class=\"summary\">\n<thead><tr><th>status</th>"
             "<th class=\"n\">items</th><th class=\"n\">share</th></tr></thead>\n<tbody>\n"]
    for status in Status:
        lines.append(f"<tr><td><span class=\"swatch\" style=\"background:{COLOURS[status]}\">"
                     f"</span>{status.text}</td><td class=\"n\">{summary.counts[status]:,}</td>"
                     f"<td class=\"n\">{summary.share(status):.1%}</td></tr>\n")
    lines.append(f"<tr><th>all items</th><th class=\"n\">{summary.rows:,}</th><th></th></tr>\n"
                 "</tbody>\n</table>\n")
    if summary.near_duplicates:
        lines.append(f"<p>Near-duplicates: {summary.near_duplicates:,} items found by their "
                     "PDQ fingerprint (counted above under their work's status).</p>\n")
    lines.append(f"<p>Fees owed: <strong id=\"fees\">{format_amount(summary.fees_owed)}"
                 f"</strong> for {summary.works_to_license:,} works to license (one license "
                 "a work covers every copy of it).</p>\n")
    bars = [(status.text, summary.counts[status], COLOURS[status]) for status in Status]
    lines.append(_bar_chart("Items by status", bars, lambda n: f"{n:,}"))
    return "".join(lines)


def _holders(summary: Summary) -> str:
    top = summary.top_holders(TOP_IN_CHART)
    if not top:
        return "<h2>Rights holders</h2>\n<p>No item of this dataset is registered.</p>\n"
    bars = [(owner, h.fees, COLOURS[Status.ALLOWED]) for owner, h in top]
    lines = [f"<h2>Rights holders</h2>\n<p>{len(summary.holders):,} rights holders own "
             "registered items; those owed the most:</p>\n",
             _bar_chart("Fees owed by rights holder", bars, format_amount),
             "<table>\n<thead><tr><th>rights holder</th><th class=\"n\">items</th>"
             "<th class=\"n\">works to license</th><th class=\"n\">fees owed</th></tr>"
             "</thead>\n<tbody>\n"]
    for owner, h in top:
        lines.append(f"<tr><td><code>{owner}</code></td><td class=\"n\">{h.items:,}</td>"
                     f"<td class=\"n\">{h.works:,}</td>"
                     f"<td class=\"n\">{format_amount(h.fees)}</td></tr>\n")
    lines.append("</tbody>\n</table>\n")
    return "".join(lines)


def _bar_chart(caption: str, bars: list[tuple[str, int, str]],
               label: Callable[[int], str]) -> str:
    """A horizontal bar chart as inline SVG: one bar per (name, value, colour)."""
    name_width, bar_width, row_height = 190, 420, 22
    height = row_height * len(bars) + 8
    largest = max((value for _, value, _ in bars), default=0) or 1
    shapes = []
    for i, (name, value, colour) in enumerate(bars):
        y = 4 + i * row_height
        width = round(bar_width * value / largest, 1)
        short = name if len(name) <= 26 else f"{name[:12]}…{name[-10:]}"
        shapes.append(
            f"<text x=\"{name_width - 6}\" y=\"{y + 15}\" text-anchor=\"end\">"
            f"{escape(short)}</text>"
            f"<rect x=\"{name_width}\" y=\"{y + 3}\" width=\"{width}\" height=\"{row_height - 6}\""
            f" fill=\"{colour}\"><title>{escape(name)}: {escape(label(value))}</title></rect>"
            f"<text x=\"{name_width + width + 6}\" y=\"{y + 15}\">{escape(label(value))}</text>")
    total_width = name_width + bar_width + 170
    return (f"<figure><figcaption>{escape(caption)}</figcaption>"
            f"<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" width=\"{total_width}\" "
            f"height=\"{height}\" viewBox=\"0 0 {total_width} {height}\" "
            f"font-family=\"system-ui,sans-serif\" font-size=\"12\">"
            f"<title>{escape(caption)}</title>{''.join(shapes)}</svg></figure>\n")
