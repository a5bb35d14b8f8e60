"""``fanout report RESULT.json [...]``: compare runs in the terminal, and optionally as one HTML page with plots."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console


@click.command()
@click.argument("results", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also write one self-contained HTML report here (its PNG plots are written beside it).",
)
@click.option("--latency", is_flag=True, help="Also print each file's latency distributions (as wrk2 --latency).")
def report(results: tuple[Path, ...], html_path: Path | None, latency: bool) -> None:
    """Compare result files of `fanout bench`: strategies side by side, and changes from the first file."""
    # Imported here so that other commands never load matplotlib.
    from bench.report.html import write_html
    from bench.report.runs import load_runs
    from bench.report.terminal import print_report

    runs = load_runs(results)  # every file is checked before anything is printed or written
    console = Console()
    print_report(runs, console)
    if latency:
        from bench.report.latency import latency_report

        for run in runs:
            console.print(f"{run.path}:", highlight=False, soft_wrap=True)
            console.out(latency_report(run.doc), highlight=False)
    if html_path is not None:
        try:
            written = write_html(runs, html_path)
        except OSError as exc:
            raise click.FileError(str(html_path), hint=exc.strerror or str(exc)) from None
        console.print(f"HTML report: [bold]{written[0]}[/] (plots: {', '.join(p.name for p in written[1:])})")
