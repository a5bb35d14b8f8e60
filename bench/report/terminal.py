"""The report in the terminal: each run's facts, then its comparison tables."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from bench.report.runs import Run, heading, labelled, run_facts, settings_differences
from bench.report.sweep import sweep_comparisons
from bench.report.tables import comparisons, fitted_table


def print_report(runs: Sequence[Run], console: Console | None = None) -> None:
    """Print the runs' facts and comparison tables."""
    console = console or Console()
    for run in runs:
        facts = Table.grid(padding=(0, 2))
        facts.add_column(style="bold")
        facts.add_column()
        for name, value in run_facts(run):
            facts.add_row(name, value)
        console.print(Group(Text(heading(run, runs), style="bold underline"), facts), "")
    differences = settings_differences(runs)
    if differences:
        console.print(Text("PostgreSQL differs between the runs:", style="bold yellow"))
        for line in differences:
            console.print(f"  {line}")
        console.print("")
    for comparison in [*comparisons(labelled(runs)), *sweep_comparisons(labelled(runs), compact=True)]:
        console.print(fitted_table(comparison))
