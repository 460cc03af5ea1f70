"""A private PostgreSQL server for tests: its own cluster in a temporary directory, owned by
the `postgres` account, listening on a Unix socket there only; stopped with pg_ctl."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_BINS = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
PG_BIN = Path(_BINS[-1]) if _BINS else None


def unavailable() -> str | None:
    if PG_BIN is None:
        return "PostgreSQL is not installed (Debian package postgresql)"
    if os.geteuid() != 0:
        return "starting a private PostgreSQL as the postgres account needs root"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "no postgres account (Debian package postgresql creates it)"
    return None


@dataclass(frozen=True)
class PgServer:
    directory: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql:///postgres?host={self.directory}&port={self.port}&user=postgres"


def _as_postgres(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runuser", "-u", "postgres", "--", *cmd], capture_output=True, text=True, timeout=120,
                          check=True)


def start_postgres(port: int = 54329) -> PgServer:
    assert PG_BIN is not None
    # Not under pytest's tmp_path: its parents are private to root, and the server runs as postgres.
    directory = Path(tempfile.mkdtemp(prefix="secpolicy-pg-"))
    pw = pwd.getpwnam("postgres")
    os.chown(directory, pw.pw_uid, pw.pw_gid)
    data = directory / "data"
    _as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
    _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(directory / "log"), "-w", "-o",
                 f"-k {directory} -c listen_addresses='' -p {port} -c fsync=off", "start")
    return PgServer(directory, port)


def stop_postgres(server: PgServer) -> None:
    assert PG_BIN is not None
    subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(server.directory / "data"),
                    "-m", "immediate", "-w", "stop"], capture_output=True, timeout=60, check=False)
    shutil.rmtree(server.directory, ignore_errors=True)


def private_postgres() -> Iterator[PgServer]:
    """The body of a pytest fixture: skip where no server can be started, else one for the
    fixture's scope, stopped and removed after it."""
    import pytest

    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    server = start_postgres()
    try:
        yield server
    finally:
        stop_postgres(server)
