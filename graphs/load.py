"""Replace the harness's graph in Postgres with an edge list, in bulk, all or nothing.

The new graph is built in a staging schema next to the harness's (``<schema>_load``): the file is streamed block by
block into an unindexed table with COPY (asyncpg, one binary COPY per block, so memory stays flat), then set-based SQL
drops self-follows and duplicates into ``follows``, derives ``users`` with their follower and followee counts,
optionally seeds a post history, and builds the indexes. Only then does one transaction drop the old tables and move the
new ones in. A bad line or any failure before that point drops the staging schema, and the previous graph is untouched.
After the swap the namespace's derived Redis state is rebuilt (:mod:`targets.stores.materialise`), so nothing stale from
the previous graph remains.
"""

from __future__ import annotations

import asyncio
import os
import struct
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import asyncpg
import numpy as np
from rich.progress import Progress, TaskID

from graphs.edgelist import EdgeBlock, open_edge_file, read_edges, write_edges
from graphs.formats import ReadOptions
from graphs.generate import GraphSpec, generate, header
from targets.errors import FanoutError
from targets.fanout.queue import FanoutQueue
from targets.ids import EPOCH_MS, SEQUENCE_BITS
from targets.stores.connections import Stores
from targets.stores.materialise import clear_derived, rebuild_timelines
from targets.stores.schema import create_schema, index_ddl
from targets.strategies.registry import DEFAULT_STRATEGIES, timeline_owners

DEFAULT_HISTORY = timedelta(days=30)
#: Session memory for the load's sorts, hash aggregates and index builds (Postgres's defaults spill to disk).
LOAD_SETTINGS = {"work_mem": "256MB", "maintenance_work_mem": "512MB"}


@dataclass
class LoadReport:
    """What a load read, dropped and wrote, and how long each phase took (seconds)."""

    path: str
    lines_read: int = 0
    #: directed edges the lines gave (with an undirected file, two per line that is not a self-follow)
    edges_read: int = 0
    #: how the file was read, e.g. ``mtx, every edge both ways``
    format: str = ""
    self_loops: int = 0
    duplicates: int = 0
    edges: int = 0
    users: int = 0
    posts: int = 0
    timeline_entries: int = 0
    #: the file's edges were strictly ascending with no self-follow, so no duplicate pass was needed
    presorted: bool = False
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def total_seconds(self) -> float:
        """Wall time of the whole load."""
        return sum(self.seconds.values())


class _Phases:
    """Times each phase and shows it as a rich progress task (when there is a Progress)."""

    def __init__(self, report: LoadReport, progress: Progress | None) -> None:
        self.report, self.progress = report, progress

    @contextmanager
    def phase(self, name: str, description: str | None, total: float | None = None) -> Iterator[TaskID | None]:
        """Time the block as phase ``name``; with a description, show it as a task (a spinner without a total)."""
        task = self.progress.add_task(description, total=total) if self.progress and description else None
        start = time.perf_counter()
        try:
            yield task
        finally:
            self.report.seconds[name] = self.report.seconds.get(name, 0.0) + time.perf_counter() - start
            if self.progress and task is not None:
                self.progress.update(task, total=total or 1, completed=total or 1)

    def advance(self, task: TaskID | None, amount: float) -> None:
        if self.progress and task is not None:
            self.progress.advance(task, amount)


def staging_schema(schema: str) -> str:
    """The schema a load of ``schema`` builds in (a name of the harness's own, within Postgres's 63 bytes)."""
    return f"{schema[:58]}_load"


async def load_graph(
    stores: Stores,
    path: str | os.PathLike[str],
    *,
    posts_per_user: int = 0,
    history: timedelta = DEFAULT_HISTORY,
    seed: int = 0,
    progress: Progress | None = None,
    read: ReadOptions | None = None,
) -> LoadReport:
    """Replace the namespace's users, follows and posts with the graph in ``path``; returns what was loaded.

    ``read`` says how to read the file (format, undirected, extra columns; :mod:`graphs.formats`).
    ``posts_per_user`` posts are seeded for every user, spread evenly over the ``history`` before now in an order
    drawn from ``seed``, and the push and hybrid home timelines are materialised from them in bulk. Raises
    :class:`~graphs.edgelist.MalformedEdgeList` at a bad line, with nothing changed.
    """
    path = Path(path)
    if not path.is_file():
        raise FanoutError(f"edge list {path} does not exist: pass an edge list (e.g. from `fanout graph generate`)")
    if posts_per_user < 0:
        raise FanoutError(f"--posts-per-user {posts_per_user} is negative: pass 0 or more")
    queued = await FanoutQueue(stores.redis, stores.settings).outstanding()
    if queued:
        # A queued job would deliver a post of the old graph into the new graph's timelines.
        raise FanoutError(
            f"{queued} fan-out job(s) of the current graph are still queued: let `fanout worker` finish them "
            "(`fanout drain` waits) or discard the namespace with `fanout reset`, then load"
        )
    schema = stores.settings.schema
    stage = staging_schema(schema)
    report = LoadReport(str(path))
    phases = _Phases(report, progress)
    async with stores.pg.acquire() as conn:
        # One load per namespace at a time: a second one waits instead of sharing the staging schema.
        await conn.execute("SELECT pg_advisory_lock(hashtext($1))", f"fanout-load:{schema}")
        for name, value in LOAD_SETTINGS.items():
            await conn.execute(f"SET {name} = '{value}'")  # the pool resets session settings on release
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {stage} CASCADE")  # left over from a crashed load
            await create_schema(conn, stage, indexes=False)
            await create_schema(conn, schema)
            await conn.execute(f"CREATE UNLOGGED TABLE {stage}.edges_raw (follower_id bigint, followee_id bigint)")
            await _copy_edges(conn, stage, path, report, phases, read or ReadOptions())
            if not report.edges_read:
                raise FanoutError(f"{path} holds no edges: pass an edge list with `follower followee` lines")
            await _derive(conn, stage, report, phases)
            if posts_per_user:
                with phases.phase("posts", f"seeding {posts_per_user} posts per user"):
                    report.posts = await seed_posts(conn, stage, posts_per_user, history, seed)
            with phases.phase("indexes", "building indexes"):
                for statement in index_ddl(stage):
                    await conn.execute(statement)
                await conn.execute(f"ANALYZE {stage}.users, {stage}.follows, {stage}.posts, {stage}.mentions")
            with phases.phase("swap", "swapping the new graph in"):
                await _swap(conn, stage, schema)
        finally:
            await conn.execute(f"DROP SCHEMA IF EXISTS {stage} CASCADE")
            await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", f"fanout-load:{schema}")
    await _rebuild_derived(stores, report, phases)
    return report


async def _copy_edges(
    conn: asyncpg.Connection, stage: str, path: Path, report: LoadReport, phases: _Phases, read: ReadOptions
) -> None:
    """Stream the file into ``edges_raw`` one block per COPY, counting lines and self-follows on the way.

    A worker thread reads, parses and encodes the next block while the server ingests the current one.
    """
    size = (await asyncio.to_thread(path.stat)).st_size
    raw = await asyncio.to_thread(open, path, "rb")
    with phases.phase("copy", f"copying {path.name}", total=size) as task, raw:
        blocks = read_edges(path, stream=open_edge_file(path, raw=raw), options=read)

        def prepare() -> tuple[EdgeBlock, memoryview] | None:
            block = next(blocks, None)
            return None if block is None else (block, binary_copy(block.followers, block.followees))

        position = 0
        report.presorted, last = True, None
        upcoming = asyncio.ensure_future(asyncio.to_thread(prepare))
        try:
            while (ready := await upcoming) is not None:
                upcoming = asyncio.ensure_future(asyncio.to_thread(prepare))
                block, payload = ready
                report.lines_read += block.lines
                report.edges_read += len(block)
                if block.layout is not None:
                    report.format = block.layout.describe()
                report.self_loops += int((block.followers == block.followees).sum())
                if report.presorted and len(block):
                    report.presorted = _ascending(block.followers, block.followees, last)
                    last = (int(block.followers[-1]), int(block.followees[-1]))
                if len(block):
                    await conn.copy_to_table(
                        "edges_raw",
                        schema_name=stage,
                        columns=("follower_id", "followee_id"),
                        source=payload,
                        format="binary",
                    )
                phases.advance(task, block.end_offset - position)
                position = block.end_offset
        finally:
            await asyncio.gather(upcoming, return_exceptions=True)  # never leave the reader thread running


#: One row of PostgreSQL's binary COPY format for two bigint columns: field count, then (length, value) per field.
_COPY_ROW = np.dtype([("fields", ">i2"), ("len1", ">i4"), ("follower", ">i8"), ("len2", ">i4"), ("followee", ">i8")])
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)  # signature, flags, no header extension
_COPY_TRAILER = struct.pack(">h", -1)


def binary_copy(followers: np.ndarray, followees: np.ndarray) -> memoryview:
    """The edges as one binary COPY stream, encoded by numpy in one vectorised pass.

    What asyncpg's ``copy_records_to_table`` sends, without a Python tuple and an encoder call per row: it halves
    the client's CPU per edge, which is what keeps the load's COPY close to ``psql \\copy`` (README, "Follower
    graphs").
    """
    rows = np.empty(len(followers), _COPY_ROW)
    rows["fields"], rows["len1"], rows["len2"] = 2, 8, 8
    rows["follower"], rows["followee"] = followers, followees
    # A memoryview, not bytes: asyncpg would take bytes for a file name.
    return memoryview(_COPY_HEADER + rows.tobytes() + _COPY_TRAILER)


def _ascending(followers: np.ndarray, followees: np.ndarray, last: tuple[int, int] | None) -> bool:
    """Whether the pairs strictly ascend (after ``last``) with no self-follow: then none repeats."""
    a, b = followers, followees
    if last is not None and (int(a[0]), int(b[0])) <= last:
        return False
    steps = (a[1:] > a[:-1]) | ((a[1:] == a[:-1]) & (b[1:] > b[:-1]))
    return bool(steps.all() and (a != b).all())


async def _derive(conn: asyncpg.Connection, stage: str, report: LoadReport, phases: _Phases) -> None:
    """Distinct non-self edges into ``follows`` (sorted, so the primary key fills in order), then ``users``.

    A file that was strictly ascending (as generated files are) is copied across as it is: no sort, no DISTINCT.
    """
    with phases.phase("follows", "dropping self-follows and duplicates"):
        select = (
            f"SELECT follower_id, followee_id FROM {stage}.edges_raw"
            if report.presorted
            else f"""SELECT DISTINCT follower_id, followee_id FROM {stage}.edges_raw WHERE follower_id <> followee_id
            ORDER BY follower_id, followee_id"""
        )
        status = await conn.execute(f"INSERT INTO {stage}.follows (follower_id, followee_id) {select}")
        report.edges = int(status.rsplit(" ", 1)[1])
        report.duplicates = report.edges_read - report.self_loops - report.edges
    with phases.phase("users", "counting followers and followees"):
        # Every id in the file is a user, even one whose only line was a (dropped) self-follow.
        status = await conn.execute(
            f"""INSERT INTO {stage}.users (id, follower_count, followee_count)
            SELECT id, sum(followers), sum(followees) FROM (
                SELECT followee_id AS id, 1 AS followers, 0 AS followees FROM {stage}.follows
                UNION ALL SELECT follower_id, 0, 1 FROM {stage}.follows
                UNION ALL SELECT follower_id, 0, 0 FROM {stage}.edges_raw WHERE follower_id = followee_id
            ) ends GROUP BY id ORDER BY id"""
        )
        report.users = int(status.rsplit(" ", 1)[1])
        await conn.execute(f"DROP TABLE {stage}.edges_raw")


async def seed_posts(conn: asyncpg.Connection, schema: str, per_user: int, history: timedelta, seed: int) -> int:
    """Give every user of ``schema`` ``per_user`` posts, spread over ``history`` up to a second ago; returns posts.

    Post number ``i`` (in an order drawn from ``seed``) is created at ``start + i * span / total`` milliseconds: the
    times strictly increase as long as the span has at least one millisecond per post, so the ids
    (:func:`targets.ids.make_post_id` of that time, sequence ``i``) are unique and time-ordered, and ``created_at``
    is derived from the id exactly as :mod:`targets.stores.postgres` does.
    """
    users = await conn.fetchval(f"SELECT count(*) FROM {schema}.users")
    total = users * per_user
    if not total:
        return 0
    now_ms = await conn.fetchval("SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint")
    end_ms = now_ms - 1000
    start_ms = max(EPOCH_MS, end_ms - int(history.total_seconds() * 1000))
    span = end_ms - start_ms
    if span < total:
        raise FanoutError(
            f"{total} posts do not fit one per millisecond since the id epoch: pass a smaller --posts-per-user"
        )
    status = await conn.execute(
        f"""INSERT INTO {schema}.posts (id, author_id, created_at, body)
        SELECT id, author_id, to_timestamp(((id >> {SEQUENCE_BITS}) + {EPOCH_MS}) / 1000.0), 'post ' || id
        FROM (
            SELECT ((($1::bigint - {EPOCH_MS}) + (i * $2::bigint) / $3::bigint) << {SEQUENCE_BITS})
                   | (i % {1 << SEQUENCE_BITS}) AS id, author_id
            FROM (
                SELECT u.id AS author_id,
                       row_number() OVER (ORDER BY hashtextextended(u.id || ':' || k, $4), u.id, k) - 1 AS i
                FROM {schema}.users u CROSS JOIN generate_series(1, $5::int) k
            ) drawn
        ) numbered ORDER BY id""",
        start_ms,
        span,
        total,
        seed,
        per_user,
    )
    return int(status.rsplit(" ", 1)[1])


async def _swap(conn: asyncpg.Connection, stage: str, schema: str) -> None:
    """In one transaction: drop the old graph's tables and move the staged ones (with their indexes) in."""
    async with conn.transaction():
        await conn.execute(f"DROP TABLE IF EXISTS {schema}.users, {schema}.follows, {schema}.posts, {schema}.mentions")
        await conn.execute(f"DROP SEQUENCE IF EXISTS {schema}.post_seq")
        for table in ("users", "follows", "posts", "mentions"):  # a loaded graph's posts mention nobody
            await conn.execute(f"ALTER TABLE {stage}.{table} SET SCHEMA {schema}")
        # posts.id's default names the sequence by oid, so it follows the sequence into the schema.
        await conn.execute(f"ALTER SEQUENCE {stage}.post_seq SET SCHEMA {schema}")


async def _rebuild_derived(stores: Stores, report: LoadReport, phases: _Phases) -> None:
    """Clear every strategy's timelines and the post cache, then materialise push and hybrid timelines."""
    with phases.phase("redis", "clearing derived Redis state"):
        await clear_derived(stores)
    if not report.posts:
        return
    owners = timeline_owners(DEFAULT_STRATEGIES)
    tasks = {}
    if phases.progress:
        tasks = {n: phases.progress.add_task(f"materialising {n} timelines", total=report.users) for n in owners}
    with phases.phase("timelines", None):

        def advance(name: str, users: int) -> None:
            phases.advance(tasks.get(name), users)

        report.timeline_entries = await rebuild_timelines(stores, owners, advance, clear=False)
    if phases.progress:
        for task in tasks.values():  # users who follow nobody have no timeline and were never counted
            phases.progress.update(task, completed=report.users)


async def load_generated(
    stores: Stores, spec: GraphSpec, posts_per_user: int, seed: int, progress: Progress | None = None
) -> str:
    """Generate the graph ``spec`` describes, load it with a post history; returns a description of its source."""
    edges = generate(spec)
    with tempfile.TemporaryDirectory(prefix="fanout-bench-") as tmp:
        path = Path(tmp) / "graph.txt"
        write_edges(path, edges.followers, edges.followees, header(spec, edges))
        await load_graph(stores, path, posts_per_user=posts_per_user, seed=seed, progress=progress)
    return f"generated {spec.describe()}"


async def load_file(
    stores: Stores,
    path: Path,
    posts_per_user: int,
    seed: int,
    progress: Progress | None = None,
    read: ReadOptions | None = None,
) -> str:
    """Load an edge list with a post history; returns a description of its source."""
    await load_graph(stores, path, posts_per_user=posts_per_user, seed=seed, progress=progress, read=read)
    return f"file {path}"
