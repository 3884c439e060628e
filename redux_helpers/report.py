"""One self-contained HTML report per target: the QA table, its figures and charts.

The file needs nothing beside it to be read: figures are PNG images inside the page
(base64 ``data:`` URIs), plotly.js is written into the page once (no CDN, so it works
offline and in an archive years later), and the only links are relative ones to the
executed notebooks of the run. It is written whole: to a temporary name, then renamed.

Layout, top to bottom: the target and the date; the flags summary (the worst flag in
its colour); notes; the QA table, one row per metric coloured by its flag; the
figures; the interactive charts; links to the executed notebooks.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import logging
import math
import os
from pathlib import Path
from urllib.parse import quote

from . import __version__
from .fitsio import write_text
from .products import PRODUCTS
from .products import path as product_path
from .qa import FLAGS, flags_summary

log = logging.getLogger(__name__)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIGURE_DPI = 90

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto;
       max-width: 1200px; padding: 0 1.5em 3em; color: #222; line-height: 1.4; }
header { border-bottom: 2px solid #444; margin-bottom: 1em; }
h1 { margin-bottom: 0.2em; }
.meta { color: #555; margin-top: 0; }
nav a { margin-right: 1em; }
.summary { display: flex; gap: 0.6em; flex-wrap: wrap; align-items: center; }
.badge { padding: 0.3em 0.8em; border-radius: 0.4em; border: 1px solid #bbb; }
.worst { font-size: 1.3em; font-weight: bold; }
table.qa { border-collapse: collapse; width: 100%; font-size: 0.92em; }
table.qa th, table.qa td { border: 1px solid #ccc; padding: 0.25em 0.5em; vertical-align: top; }
table.qa th { background: #eee; position: sticky; top: 0; }
table.qa td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.pass { background: #e3f4e5; }
.warn { background: #fff1cc; }
.fail { background: #fbd9d7; }
.info { background: #f4f4f4; }
.badge.pass, td.flag.pass { color: #14632b; }
.badge.warn, td.flag.warn { color: #7a5200; }
.badge.fail, td.flag.fail { color: #9b1c1c; }
td.flag { font-weight: bold; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #444; font-style: italic; }
.chart { margin: 1.5em 0; }
td.flags { white-space: nowrap; }
td.flags .badge { display: inline-block; margin: 0.1em 0; }
"""

FLAG_HELP = {
    "pass": "within its threshold",
    "warn": "outside its threshold: look at the step's notebook",
    "fail": "not usable as it is",
    "info": "a number to know, or a comparison with the demo's truth",
}


def _esc(text) -> str:
    return html.escape(str(text), quote=True)


def _number(x, fmt) -> str:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return _esc(x)
    if not math.isfinite(x):
        return ""
    return format(x, fmt)


def _png_bytes(item, title) -> bytes:
    """A figure's PNG: a matplotlib figure rendered at FIGURE_DPI, or an existing PNG file."""
    if isinstance(item, (str, os.PathLike)):
        path = Path(item)
        if not path.is_file():
            msg = f"figure '{title}': {path} does not exist"
            raise FileNotFoundError(msg)
        data = path.read_bytes()
        if not data.startswith(PNG_MAGIC):
            msg = f"figure '{title}': {path} is not a PNG file"
            raise ValueError(msg)
        return data
    if not hasattr(item, "savefig"):
        msg = (f"figure '{title}' should be a matplotlib Figure or the path of a PNG file, "
               f"got {type(item).__name__}")
        raise TypeError(msg)
    buf = io.BytesIO()
    item.savefig(buf, format="png", dpi=FIGURE_DPI, facecolor="white")
    return buf.getvalue()


def _summary_html(summary) -> str:
    worst = summary["worst"]
    parts = [f'<p class="badge worst {worst}">overall: {worst.upper()}</p>']
    for flag in reversed(FLAGS):            # fail, warn, pass, info
        parts.append(f'<span class="badge {flag}" title="{_esc(FLAG_HELP[flag])}">'
                     f'{summary[flag]} {flag}</span>')
    return ('<section id="summary"><h2>Summary</h2><div class="summary">'
            + "".join(parts) + f'</div><p>{summary["n"]} metrics. '
            + "; ".join(f"<b>{f}</b>: {_esc(h)}" for f, h in FLAG_HELP.items())
            + ".</p></section>")


def _table_html(qa_table) -> str:
    head = "".join(f"<th>{c}</th>" for c in
                   ("step", "metric", "value", "error", "unit", "flag", "reason"))
    rows = []
    for r in qa_table:
        flag = str(r["flag"])
        rows.append(
            f'<tr class="{_esc(flag)}"><td>{_esc(r["step"])}</td><td>{_esc(r["metric"])}</td>'
            f'<td class="num">{_number(r["value"], ".6g")}</td>'
            f'<td class="num">{_number(r["error"], ".2g")}</td>'
            f'<td>{_esc(r["unit"])}</td><td class="flag {_esc(flag)}">{_esc(flag)}</td>'
            f'<td>{_esc(r["reason"])}</td></tr>')
    return ('<section id="metrics"><h2>Metrics</h2>'
            f'<table class="qa"><thead><tr>{head}</tr></thead><tbody>'
            + "\n".join(rows) + "</tbody></table></section>")


def _figures_html(figures) -> str:
    if not figures:
        return ""
    parts = ['<section id="figures"><h2>Figures</h2>']
    for title, item in figures:
        b64 = base64.b64encode(_png_bytes(item, title)).decode("ascii")
        parts.append(f'<figure><img src="data:image/png;base64,{b64}" alt="{_esc(title)}">'
                     f"<figcaption>{_esc(title)}</figcaption></figure>")
    parts.append("</section>")
    return "\n".join(parts)


def _charts_html(charts) -> str:
    if not charts:
        return ""
    from plotly.offline import get_plotlyjs

    # plotly.js once, inline: every chart below uses it (no CDN: the file works offline)
    parts = ['<section id="charts"><h2>Interactive charts</h2>',
             f'<script type="text/javascript">{get_plotlyjs()}</script>']
    for title, fig in charts:
        body = fig.to_html(full_html=False, include_plotlyjs=False, default_height="480px")
        parts.append(f'<div class="chart"><h3>{_esc(title)}</h3>{body}</div>')
    parts.append("</section>")
    return "\n".join(parts)


def _notebooks_html(notebooks, folder: Path, running=None) -> str:
    if not notebooks:
        return ""
    items = []
    running = Path(running).with_suffix("") if running else None
    for nb in notebooks:
        nb = Path(nb)
        page = nb if nb.suffix == ".html" else nb.with_suffix(".html")
        target, note = page, ""
        # the step writing this report: its notebook is written when the step ends
        pending = running is not None and nb.with_suffix("") == running
        if pending:
            note = " (this step: its rendering is written when `redux run` ends the step)"
        elif not page.is_file():
            target, note = nb, " (no HTML rendering: the executed notebook itself)"
        name = _esc(nb.stem)
        if not pending and not target.is_file():
            items.append(f"<li>{name}: not found ({_esc(target)})</li>")
            continue
        href = quote(Path(os.path.relpath(target.resolve(), folder.resolve())).as_posix())
        items.append(f'<li><a href="{_esc(href)}">{name}</a>{_esc(note)}</li>')
    return ('<section id="notebooks"><h2>Executed notebooks</h2><p>Each step as it ran, '
            "with its figures and the sentences that explain them.</p><ul>"
            + "".join(items) + "</ul></section>")


def write_report(path, *, target_name, qa_table, figures=(), charts=(), notebooks=(),
                 notes=(), running=None) -> Path:
    """Write one self-contained HTML report; return its path.

    Parameters
    ----------
    path : path-like
        The report, e.g. ``products/<target>/11_qa/report.html``; written whole.
    target_name : str
        The target, for the title.
    qa_table : `~astropy.table.Table`
        The table of `redux_helpers.qa.collect` (columns step, metric, value, error,
        unit, flag, reason); each row is coloured by its flag.
    figures : list of (title, figure)
        A matplotlib figure (rendered as a PNG at 90 dpi) or the path of an existing
        PNG file; both are embedded in the page as base64.
    charts : list of (title, `plotly.graph_objects.Figure`)
        Interactive charts, drawn by plotly.js, which is written into the page once.
    notebooks : list of path-like
        Executed notebooks (``.ipynb``); each links to its ``.html`` rendering beside
        it (or to the notebook when there is none), by a path relative to the report.
    notes : list of str
        Sentences shown under the summary (what was not run and why, ...).
    running : path-like, optional
        The notebook of the step writing the report (11_qa's, under ``redux run``): it
        is linked though it is not written yet (`redux run` writes it and its HTML when
        the step ends), instead of "not found" on a first run or the previous run's
        rendering on the next.
    """
    path = Path(path)
    summary = flags_summary(qa_table)
    when = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    title = f"redux QA report: {target_name}"
    sections = [("summary", "summary"), ("metrics", "metrics")]
    sections += [("figures", "figures")] if figures else []
    sections += [("charts", "charts")] if charts else []
    sections += [("notebooks", "notebooks")] if notebooks else []
    nav = " ".join(f'<a href="#{a}">{t}</a>' for a, t in sections)
    notes_html = ("<section id=\"notes\"><h2>Notes</h2><ul>"
                  + "".join(f"<li>{_esc(n)}</li>" for n in notes) + "</ul></section>"
                  if notes else "")
    body = "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(title)}</title><style>{CSS}</style></head><body>",
        f"<header><h1>QA report: {_esc(target_name)}</h1>",
        f'<p class="meta">made {_esc(when)} by redux {_esc(__version__)}</p>',
        f"<nav>{nav}</nav></header>",
        _summary_html(summary),
        notes_html,
        _table_html(qa_table),
        _figures_html(figures),
        _charts_html(charts),
        _notebooks_html(notebooks, path.parent, running),
        "</body></html>",
    ])
    write_text(path, body)
    log.info("wrote %s (%d metrics, worst flag %s)", path, summary["n"], summary["worst"])
    return path


def write_index(products, summaries=()) -> Path:
    """``<products>/index.html``: every target's report, with its QA flags at a glance.

    One row per target folder under ``products`` that has a QA table or is in
    ``summaries`` (a batch's `redux_helpers.batch.TargetSummary` list): the batch's
    status (steps run, up to date, the failure and its reason), the counts of each QA
    flag from ``11_qa/qa.ecsv`` and a relative link to ``11_qa/report.html``.
    """
    from .fitsio import read_table

    products = Path(products)
    by_name = {s.target: s for s in summaries}
    qa_file = PRODUCTS["qa"]
    names = sorted(set(by_name) | {p.parent.parent.name
                                   for p in products.glob(f"*/{qa_file.step}/{qa_file.pattern}")})
    rows = []
    for name in names:
        s = by_name.get(name)
        qa_path = product_path(lambda step, name=name: products / name / step, "qa")
        rep = product_path(lambda step, name=name: products / name / step, "report")
        if s is None:
            status, cls = "not in the last batch", "info"
        elif s.ok:
            status, cls = (f"ok: {len(s.ran)} step(s) run, {len(s.skipped)} up to date, "
                           f"{s.seconds:.0f} s"), "pass"
        else:
            status, cls = f"FAILED at {s.failed}: {s.reason}", "fail"
        if qa_path.is_file():
            summ = flags_summary(read_table(qa_path))
            flags = " ".join(f'<span class="badge {f}">{summ[f]} {f}</span>'
                             for f in reversed(FLAGS))
            worst = f'<span class="badge {summ["worst"]}">{summ["worst"].upper()}</span>'
        else:
            flags, worst = "no QA table", ""
        link = (f'<a href="{quote(os.path.relpath(rep, products).replace(os.sep, "/"))}">'
                "report</a>" if rep.is_file() else "")
        rows.append(f'<tr class="{cls}"><td><b>{_esc(name)}</b></td><td>{_esc(status)}</td>'
                    f'<td>{worst}</td><td class="flags">{flags}</td><td>{link}</td></tr>')
    when = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    body = "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>redux: {len(names)} targets</title><style>{CSS}</style></head><body>",
        f"<header><h1>redux products: {len(names)} target(s)</h1>",
        f'<p class="meta">updated {_esc(when)} by redux {_esc(__version__)}</p></header>',
        '<table class="qa"><thead><tr><th>target</th><th>last batch</th><th>QA</th>'
        "<th>flags</th><th>report</th></tr></thead><tbody>",
        *rows, "</tbody></table></body></html>"])
    path = products / "index.html"
    write_text(path, body)
    return path
