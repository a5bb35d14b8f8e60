"""Result files: the JSON document one ``fanout bench`` run leaves in ``results/``, validated by its JSON Schema.

The format is documented in ``results/README.md`` and fixed by ``results/schema.json``. This module builds the run
metadata, turns HdrHistograms (recorded in microseconds, :mod:`targets.histograms`) into latency blocks in milliseconds
and back, and writes and loads result files, validating both ways so a file that exists is a file the report can read.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import jsonschema
from hdrh.histogram import HdrHistogram
from jsonschema.exceptions import best_match

from targets import histograms
from targets.config import mask_url
from targets.errors import FanoutError
from targets.histograms import encode as encode_histogram  # the result format's name for it
from targets.stores.connections import Stores
from targets.urls import mask_args

FORMAT = "fanout-bench-result"
FORMAT_VERSION = 1
#: Unit of every value recorded in the histograms.
HISTOGRAM_UNIT = histograms.UNIT
#: Where result files go by default (relative to the working directory, like the path `fanout bench` prints).
RESULTS_DIR = Path("results")
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "results" / "schema.json"

Document = dict[str, Any]


class InvalidResult(FanoutError, ValueError):
    """A file or document that is not a valid fanout-bench result (the message names it and the problem)."""


# -- schema ---------------------------------------------------------------------------------------------------------
@cache
def schema() -> dict[str, Any]:
    """The result JSON Schema (results/schema.json)."""
    return json.loads(SCHEMA_PATH.read_text())


def validation_error(doc: object) -> str | None:
    """The most relevant schema violation of ``doc`` as one line (``at <path>: <message>``), or None if it is valid."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        return f'not a fanout-bench result (no "format": "{FORMAT}" at the top)'
    validator = jsonschema.Draft202012Validator(schema())
    error = best_match(validator.iter_errors(doc))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "top level"
    message = error.message if len(error.message) <= 200 else error.message[:197] + "..."
    return f"at {where}: {message}"


def validate(doc: object, name: str = "result") -> None:
    """Raise :class:`InvalidResult` (naming ``name``) unless ``doc`` is a valid result document."""
    problem = validation_error(doc)
    if problem is not None:
        raise InvalidResult(f"{name} is not a valid result file: {problem}")


# -- histograms -----------------------------------------------------------------------------------------------------
def decode_histogram(encoded: str) -> HdrHistogram:
    """The histogram back from :func:`encode_histogram` text; raises :class:`InvalidResult` if it is not one."""
    try:
        return histograms.decode(encoded)
    except ValueError as exc:
        raise InvalidResult(str(exc)) from None


def latency_block(histogram: HdrHistogram, *, uncorrected: HdrHistogram | None = None, encode: bool = True) -> Document:
    """The latency block of a result: the histogram's summary in milliseconds (:func:`targets.histograms.summary`).

    With ``uncorrected`` (the service-time histogram recorded beside the corrected one) it is nested as
    ``uncorrected``. ``encode`` keeps the histograms themselves in the block so the run can be re-analysed.
    """
    block: Document = histograms.summary(histogram)
    if encode:
        block["histogram"] = encode_histogram(histogram)
    if uncorrected is not None:
        block["uncorrected"] = latency_block(uncorrected, encode=encode)
    return block


def block_histogram(block: Document) -> HdrHistogram | None:
    """The decoded histogram of a latency block, or None when the block does not carry one."""
    encoded = block.get("histogram")
    return decode_histogram(encoded) if encoded else None


# -- run metadata ---------------------------------------------------------------------------------------------------
def utc_now() -> str:
    """The current time as the result format writes it (ISO 8601, UTC, milliseconds, ``Z``)."""
    return format_time(datetime.now(UTC))


def format_time(moment: datetime) -> str:
    """``moment`` (timezone-aware) in the result format's UTC notation."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def git_state(directory: Path | None = None) -> Document:
    """``{"commit": sha, "dirty": bool}`` of the checkout holding the harness; both None outside a git checkout."""
    cwd = directory or Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit.strip(), "dirty": None if status is None else bool(status.strip())}


def harness_version() -> str:
    """The installed fanout-bench version."""
    try:
        return metadata.version("fanout-bench")
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


#: The PostgreSQL settings that move the figures most, recorded with every run (a setting a version lacks, such as
#: ``io_method`` before 18, is left out): two runs that differ in one of them differ in more than the version.
PG_SETTINGS = (
    "shared_buffers",
    "work_mem",
    "effective_cache_size",
    "jit",
    "data_checksums",
    "io_method",
    "autovacuum",
    "synchronous_commit",
    "fsync",
    "max_parallel_workers_per_gather",
    "random_page_cost",
)


async def server_versions(stores: Stores) -> tuple[Document, Document]:
    """The Redis and Postgres server versions (and Postgres's :data:`PG_SETTINGS`), as the servers report them."""
    info = await stores.redis.info("server")
    async with stores.pg.acquire() as conn:
        version = await conn.fetchval("SHOW server_version")
        version_num = await conn.fetchval("SHOW server_version_num")
        settings = await conn.fetch(
            "SELECT name, current_setting(name) AS value FROM pg_settings WHERE name = ANY($1::text[]) ORDER BY name",
            list(PG_SETTINGS),
        )
    redis = {"version": str(info["redis_version"]), "url": mask_url(stores.settings.redis_url)}
    postgres = {
        "version": str(version).split()[0],
        "version_num": int(version_num),
        "url": mask_url(stores.settings.database_url),
        "settings": {r["name"]: r["value"] for r in settings},
    }
    return redis, postgres


#: Options whose values are never written into a result (see ``run.command``).
HIDDEN = ("--fault-exec",)


async def run_metadata(
    stores: Stores, *, parameters: dict[str, Any], seed: int, started_at: str | None = None, command: str | None = None
) -> Document:
    """The ``run`` block: when, what code, which servers and machine, and every parameter with the seed.

    ``parameters`` must be JSON values (the command's options after parsing); ``finished_at`` is set by
    :func:`finish`.
    """
    redis, postgres = await server_versions(stores)
    run: Document = {
        "started_at": started_at or utc_now(),
        "finished_at": None,
        # Masked: a --redis-url or --database-url on the command line may hold a password, a --fault-exec command a
        # secret of its own.
        "command": " ".join(
            mask_args(command.split(" ") if command is not None else ["fanout", *sys.argv[1:]], HIDDEN)
        ),
        "git": git_state(),
        "harness": {"name": "fanout-bench", "version": harness_version()},
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation()},
        "platform": platform.platform(),
        "cpu_count": os.cpu_count() or 1,
        "redis": redis,
        "postgres": postgres,
        "parameters": parameters,
        "seed": seed,
    }
    return run


def new_result(scenario: str, run: Document, graph: Document) -> Document:
    """An empty result document (``complete`` false until :func:`finish`); strategies are added as they run."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "complete": False,
        "scenario": scenario,
        "run": run,
        "graph": graph,
        "histogram_unit": HISTOGRAM_UNIT,
        "strategies": {},
    }


def finish(doc: Document, *, complete: bool, reason: str | None = None) -> Document:
    """Stamp the end time and completeness (with ``reason`` when the run stopped early); returns ``doc``."""
    doc["run"]["finished_at"] = utc_now()
    doc["complete"] = complete
    if not complete and reason:
        doc["incomplete_reason"] = reason
    return doc


# -- files ----------------------------------------------------------------------------------------------------------
def default_path(doc: Document, directory: Path = RESULTS_DIR) -> Path:
    """``results/<started_at as 20261125T104733Z>-<scenario>.json`` (a ``-2``, ``-3``... suffix if taken)."""
    stamp = doc["run"]["started_at"].split(".")[0].replace("-", "").replace(":", "").rstrip("Z") + "Z"
    candidate = directory / f"{stamp}-{doc['scenario']}.json"
    n = 2
    while candidate.exists():
        candidate = directory / f"{stamp}-{doc['scenario']}-{n}.json"
        n += 1
    return candidate


def write_result(doc: Document, path: Path | str | None = None) -> Path:
    """Validate ``doc`` and write it atomically (temporary file, then rename); returns the path written.

    Raises :class:`InvalidResult` and writes nothing when the document does not follow the schema.
    """
    validate(doc)
    try:
        text = json.dumps(doc, indent=1, allow_nan=False) + "\n"
    except ValueError as exc:  # NaN or infinity slipped into a figure
        raise InvalidResult(f"result is not valid JSON: {exc}") from None
    target = Path(path) if path is not None else default_path(doc)
    atomic_write(target, text.encode("utf-8"))
    return target


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` all at once: a temporary file beside it, synced, then renamed over it.

    Readers see the old file or the new one, never half of one; on any failure the temporary file is removed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file private; give it the usual permissions
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def load_result(path: Path | str) -> Document:
    """Read and validate a result file; raises :class:`InvalidResult` with one line naming the file and problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidResult(f"{path}: no such file (give the path `fanout bench` printed)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidResult(f"{path}: cannot be read ({type(exc).__name__}: {exc})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidResult(f"{path}: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    problem = validation_error(doc) or _undecodable_histogram(doc)
    if problem is not None:
        raise InvalidResult(f"{path}: not a valid result file: {problem}")
    return doc


def _undecodable_histogram(node: object, where: str = "") -> str | None:
    """``at <path>: ...`` for the first ``histogram`` in the document that does not decode, else None."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{where}/{key}" if where else str(key)
            if key == "histogram" and isinstance(value, str):
                try:
                    decode_histogram(value)
                except InvalidResult as exc:
                    return f"at {here}: {exc}"
            elif (problem := _undecodable_histogram(value, here)) is not None:
                return problem
    return None
