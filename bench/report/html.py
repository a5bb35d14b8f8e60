"""The HTML report: one self-contained page with every run's facts, the comparison tables and the plots.

The tables are :mod:`bench.report.tables`' (the same model the terminal prints); the plots are embedded as data URIs,
so the page loads nothing from elsewhere.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

from bench.report import plots
from bench.report.runs import Run, heading, labelled, run_facts, settings_differences
from bench.report.sweep import sweep_comparisons
from bench.report.tables import comparisons, html_table
from bench.results import atomic_write

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1300px; }}
table {{ border-collapse: collapse; margin: 1em 0 2em; }}
th, td {{ padding: 0.25em 0.8em; border-bottom: 1px solid #ddd; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
tr.section td {{ font-weight: bold; color: #157; padding-top: 0.9em; text-align: left; }}
table.facts td {{ text-align: left; }}
.best {{ color: #080; font-weight: bold; }} .better {{ color: #080; }} .worse {{ color: #b00; }}
.bad {{ color: #b00; font-weight: bold; }}
figure {{ margin: 1.5em 0; }} figure img {{ max-width: 100%; border: 1px solid #eee; }}
figcaption {{ color: #555; font-size: 0.9em; }}
p.caption {{ color: #555; }} p.warning {{ color: #a60; font-weight: bold; }} small.note {{ color: #777; }}
</style>
</head>
<body>
<h1>{title}</h1>
{runs}
{tables}
<h2>Plots</h2>
{figures}
<script>
// Marks how many plots decoded, for checks in headless browsers (data-plots-loaded="4/4").
window.addEventListener("load", function () {{
  var images = Array.prototype.slice.call(document.images);
  var decoded = images.filter(function (img) {{ return img.complete && img.naturalWidth > 0; }}).length;
  document.body.setAttribute("data-plots-loaded", decoded + "/" + images.length);
}});
</script>
</body>
</html>
"""


def _facts_html(run: Run, runs: Sequence[Run]) -> str:
    rows = "".join(f"<tr><td><b>{html.escape(k)}</b></td><td>{html.escape(v)}</td></tr>" for k, v in run_facts(run))
    return f'<h2>{html.escape(heading(run, runs))}</h2>\n<table class="facts">{rows}</table>'


def _differences_html(runs: Sequence[Run]) -> str:
    lines = settings_differences(runs)
    if not lines:
        return ""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return f"<p><b>PostgreSQL differs between the runs:</b></p><ul>{items}</ul>"


def write_html(runs: Sequence[Run], path: Path | str) -> list[Path]:
    """Write the HTML report and its PNG plots beside it; returns the paths written (the HTML first).

    The page embeds every plot as a data URI, so it is complete on its own; the PNG files are for other uses.
    """
    path = Path(path)
    docs = labelled(runs)
    figures, written = [], []
    for suffix, caption, plot in plots.plots_for(docs):
        image = plot(docs)
        png_path = path.with_name(f"{path.stem}-{suffix}.png")
        atomic_write(png_path, image)
        written.append(png_path)
        data = base64.b64encode(image).decode("ascii")
        figures.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(suffix)}" id="plot-{suffix}">'
            f"<figcaption>{html.escape(caption)} (also {html.escape(png_path.name)})</figcaption></figure>"
        )
    names = [r.path.name for r in runs] if len(runs) == 1 else [f"{r.label} = {r.path.name}" for r in runs]
    title = "fanout-bench report: " + ", ".join(names)
    page = PAGE.format(
        title=html.escape(title),
        runs="\n".join([*(_facts_html(r, runs) for r in runs), _differences_html(runs)]),
        tables="\n".join(html_table(c) for c in [*comparisons(docs), *sweep_comparisons(docs)]),
        figures="\n".join(figures),
    )
    atomic_write(path, page.encode("utf-8"))
    return [path, *written]
