"""The result files a report compares: loaded and validated, labelled A, B, ..., and what ran where."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import ascii_uppercase

from bench.report.tables import Labelled, number
from bench.results import Document, load_result


@dataclass(frozen=True)
class Run:
    """One loaded result file and the label the report gives it."""

    label: str
    path: Path
    doc: Document


def load_runs(paths: Iterable[Path | str]) -> list[Run]:
    """Load and validate every file first (labelled A, B, ...), so bad input fails before anything is written."""
    paths = list(paths)
    labels = [ascii_uppercase[i] if i < 26 else f"R{i + 1}" for i in range(len(paths))]
    return [Run(label, Path(p), load_result(p)) for label, p in zip(labels, paths, strict=True)]


def labelled(runs: Sequence[Run]) -> Labelled:
    """(label, document) pairs, what the tables and plots take."""
    return [(r.label, r.doc) for r in runs]


def heading(run: Run, runs: Sequence[Run]) -> str:
    """What a run's facts are headed with: ``Run A`` among several, its scenario and start time when alone."""
    if len(runs) > 1:
        return f"Run {run.label}"
    return f"{run.doc['scenario'].capitalize()} run of {run.doc['run']['started_at']}"


def pg_settings(postgres: dict) -> str:
    """The recorded PostgreSQL settings as ``name=value`` pairs (results written before they were recorded: –)."""
    return ", ".join(f"{k}={v}" for k, v in postgres.get("settings", {}).items()) or "–"


def settings_differences(runs: Sequence[Run]) -> list[str]:
    """One line per recorded PostgreSQL setting (or version) that is not the same in every run, e.g.
    ``data_checksums: A on, B off``: a comparison across them compares more than the strategies."""
    if len(runs) < 2:
        return []
    recorded = [
        {"version": r.doc["run"]["postgres"]["version"], **r.doc["run"]["postgres"].get("settings", {})} for r in runs
    ]
    names = sorted({name for values in recorded for name in values}, key=lambda n: (n != "version", n))
    return [
        f"{name}: " + ", ".join(f"{r.label} {values.get(name, '–')}" for r, values in zip(runs, recorded, strict=True))
        for name in names
        if len({values.get(name) for values in recorded}) > 1
    ]


def run_facts(run: Run) -> list[tuple[str, str]]:
    """What ran where, for the header of a report."""
    doc, meta = run.doc, run.doc["run"]
    git = meta["git"]
    commit = (
        "not a git checkout" if git["commit"] is None else git["commit"][:12] + (" (dirty)" if git["dirty"] else "")
    )
    parameters = ", ".join(f"{k}={v}" for k, v in meta["parameters"].items())
    facts = [
        ("file", str(run.path)),
        (
            "scenario",
            doc["scenario"] + ("" if doc["complete"] else f" — incomplete: {doc.get('incomplete_reason', '')}"),
        ),
        ("started", meta["started_at"]),
        ("commit", commit),
        ("harness", f"{meta['harness']['name']} {meta['harness']['version']}"),
        ("servers", f"Redis {meta['redis']['version']}, PostgreSQL {meta['postgres']['version']}"),
        ("PostgreSQL settings", pg_settings(meta["postgres"])),
        ("machine", f"{meta['cpu_count']} CPUs, Python {meta['python']['version']}, {meta['platform']}"),
        ("graph", ", ".join(f"{k} {number(v)}" for k, v in doc["graph"].items())),
        ("seed", str(meta["seed"])),
        ("parameters", parameters or "–"),
    ]
    if doc.get("note"):
        facts.append(("note", doc["note"]))
    return facts
