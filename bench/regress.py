"""Timing regressions: compare two commits back to back on one machine, and record the gate's timing baseline.

A committed timing baseline only catches gross slowdowns, because a shared machine's speed drifts by tens of percent
between runs. Running both commits now, alternately (A B, B A, A B, ...), exposes them to the same drift, so what
differs between them is the code. Each commit is checked out in a temporary ``git worktree`` and benchmarked with
this environment's Python and the same stores; then pytest-benchmark's own ``compare --between`` sets the runs side
by side, and a table shows the best time of each commit and the cost figures (exact, so any difference is real).

    python -m bench.regress compare main HEAD       # two commits
    python -m bench.regress compare HEAD .          # HEAD against the working tree, uncommitted edits included
    python -m bench.regress compare v1 v2 --pairs 5 -k read
    python -m bench.regress record                  # re-record tests/benchmarks/baseline/timings.json
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from devservers.manager import resolve_urls
from targets.config import DATABASE_URL_VAR, REDIS_URL_VAR

BENCHMARKS = "tests/benchmarks"
TIMING_BASELINE = Path(BENCHMARKS) / "baseline" / "timings.json"
WORKING_TREE = "."
console = Console(width=None if sys.stdout.isatty() else 150)  # wide enough for the table in CI logs


def git(*args: str, cwd: Path | None = None) -> str:
    """Run git and return its stripped output; a failure becomes a one-line click error."""
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise click.ClickException(f"git {' '.join(args)} failed: {done.stderr.strip().splitlines()[-1]}")
    return done.stdout.strip()


@contextmanager
def checkout(rev: str, root: Path, into: Path) -> Iterator[tuple[Path, str]]:
    """The tree of ``rev`` (or the working tree itself for ``.``) and a label for it; worktrees are removed after."""
    if rev == WORKING_TREE:
        yield root, "worktree"
        return
    sha = git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", cwd=root)
    path = into / sha[:12]
    git("worktree", "add", "--detach", "--quiet", str(path), sha, cwd=root)
    try:
        if not (path / BENCHMARKS).is_dir():
            raise click.ClickException(f"{rev} ({sha[:12]}) has no {BENCHMARKS}: pick a commit that has the gate")
        yield path, sha[:12]
    finally:
        git("worktree", "remove", "--force", str(path), cwd=root)


def run_benchmarks(tree: Path, out: Path, select: str | None) -> None:
    """Run the tree's benchmarks with its own code (first on the path), timing enabled, results to ``out``."""
    redis_url, database_url = resolve_urls(os.environ.get(REDIS_URL_VAR), os.environ.get(DATABASE_URL_VAR))
    env = {**os.environ, "PYTHONPATH": str(tree), REDIS_URL_VAR: redis_url, DATABASE_URL_VAR: database_url}
    cmd = [sys.executable, "-m", "pytest", BENCHMARKS, "-q", "-p", "no:cacheprovider", "--benchmark-enable"]
    cmd += ["--benchmark-json", str(out), *(["-k", select] if select else [])]
    done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode != 0 or not out.exists():
        console.print(done.stdout[-4000:], done.stderr[-2000:], markup=False)
        raise click.ClickException(f"the benchmarks of {tree} failed (exit {done.returncode}); output above")


def summarise(runs: dict[str, list[Path]]) -> Table:
    """Best time of each benchmark per tree (min over all its runs), the ratio, and cost figures that differ."""
    (a, a_files), (b, _) = runs.items()
    best: dict[str, dict[str, float]] = {a: {}, b: {}}
    costs: dict[str, dict[str, dict]] = {a: {}, b: {}}
    for label, files in runs.items():
        for file in files:
            for bench in json.loads(file.read_text())["benchmarks"]:
                name = bench["name"]
                best[label][name] = min(best[label].get(name, float("inf")), bench["stats"]["min"])
                costs[label][name] = bench.get("extra_info", {})
    table = Table(title=f"best time of {len(a_files)} runs each: {b} against {a}")
    for column in ("benchmark", f"{a} min (ms)", f"{b} min (ms)", "ratio", "cost figures that differ"):
        table.add_column(column, justify="left" if column in ("benchmark", "cost figures that differ") else "right")
    for name in sorted(set(best[a]) | set(best[b])):
        ta, tb = best[a].get(name), best[b].get(name)
        ca, cb = costs[a].get(name, {}), costs[b].get(name, {})
        differ = [f"{k} {ca.get(k)} -> {cb.get(k)}" for k in sorted(set(ca) | set(cb)) if ca.get(k) != cb.get(k)]
        table.add_row(
            escape(name),  # a parametrised name's [...] is not markup
            "-" if ta is None else f"{ta * 1000:.3f}",
            "-" if tb is None else f"{tb * 1000:.3f}",
            "-" if ta is None or tb is None else f"{tb / ta:.2f}",
            ", ".join(differ) or "same",
        )
    return table


@click.group()
def regress() -> None:
    """Compare the regression benchmarks of two commits, or record the timing baseline."""


@regress.command()
@click.argument("base")
@click.argument("head", default=WORKING_TREE)
@click.option("--pairs", default=3, show_default=True, help="Runs of each tree, alternating which goes first.")
@click.option("-k", "select", help="Only benchmarks matching this pytest -k expression.")
@click.option("--keep", type=click.Path(file_okay=False, path_type=Path), help="Keep the JSON results here.")
def compare(base: str, head: str, pairs: int, select: str | None, keep: Path | None) -> None:
    """Benchmark BASE and HEAD (a commit, or . for the working tree) alternately and compare them."""
    if pairs < 1:
        raise click.BadParameter(f"{pairs} is not a positive number of runs", param_hint="--pairs")
    root = Path(git("rev-parse", "--show-toplevel"))
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fanout-regress-")))
        out = keep or scratch
        out.mkdir(parents=True, exist_ok=True)
        trees = [stack.enter_context(checkout(rev, root, scratch)) for rev in (base, head)]
        if trees[0][1] == trees[1][1]:
            raise click.ClickException(f"{base} and {head} are the same tree: compare two different commits")
        runs: dict[str, list[Path]] = {label: [] for _, label in trees}
        for i in range(pairs):
            for tree, label in trees if i % 2 == 0 else trees[::-1]:
                result = out / f"{label}_run{i}.json"
                console.print(f"run {i + 1}/{pairs}: {label}")
                run_benchmarks(tree, result, select)
                runs[label].append(result)
        files = [f.name for label in runs for f in runs[label]]  # relative, so the columns are named by file
        compare = Path(sys.executable).with_name("pytest-benchmark")
        between = [str(compare), "compare", "--between", "min,median", "--group-by", "name", *files]
        subprocess.run(between, cwd=out, check=False)
        console.print(summarise(runs))
        if keep:
            console.print(f"results kept in {keep}")


@regress.command()
@click.option("--runs", default=3, show_default=True, help="Runs to choose each benchmark's typical one from.")
def record(runs: int) -> None:
    """Re-record the gate's timing baseline from this working tree (on a CI-class machine).

    Of ``--runs`` runs, each benchmark keeps the one whose best round is the median, so neither a lucky quiet
    moment nor a noisy one sets the baseline. Raw per-round data is left out to keep the file small.
    """
    if runs < 1:
        raise click.BadParameter(f"{runs} is not a positive number of runs", param_hint="--runs")
    root = Path(git("rev-parse", "--show-toplevel"))
    chosen: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="fanout-record-") as scratch:
        for i in range(runs):
            console.print(f"run {i + 1}/{runs}")
            out = Path(scratch) / f"{i}.json"
            run_benchmarks(root, out, None)
            data = json.loads(out.read_text())
            for bench in data["benchmarks"]:
                chosen.setdefault(bench["name"], []).append(bench)
    for bench in (b for found in chosen.values() for b in found):
        bench["stats"].pop("data", None)
    data["benchmarks"] = [sorted(found, key=lambda b: b["stats"]["min"])[len(found) // 2] for found in chosen.values()]
    target = root / TIMING_BASELINE
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(data, indent=2) + "\n")
    console.print(f"wrote {target.relative_to(root)} ({len(data['benchmarks'])} benchmarks): commit it with the reason")


if __name__ == "__main__":
    regress()
