"""A throwaway PostgreSQL server for tests: Debian's `postgresql` binaries, a cluster in a
temporary folder, listening on 127.0.0.1 on a free port, gone when the test is done.

Missing binaries skip the test, or fail it where DSSL_REQUIRE_POSTGRES is set (`.ci/run`
installs Debian's `postgresql` and sets it). As root the server runs as the `postgres`
user (PostgreSQL refuses root), through `runuser`.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

REQUIRE_VAR = "DSSL_REQUIRE_POSTGRES"
BINARIES = "/usr/lib/postgresql/*/bin"  # Debian's layout: one folder per major version
SUPERUSER = "postgres"


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's bin folder (with initdb and pg_ctl), or None."""
    found = [p for p in Path("/").glob(BINARIES.lstrip("/")) if (p / "initdb").exists() and (p / "pg_ctl").exists()]
    return max(found, key=lambda p: int(re.sub(r"\D", "", p.parent.name) or 0), default=None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def postgres_database(name: str = "mlflow") -> Iterator[str]:
    """A running PostgreSQL with an empty database `name`: its SQLAlchemy URI (no password,
    local connections are trusted)."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        message = "PostgreSQL is not installed (apt-get install -y postgresql)"
        if os.environ.get(REQUIRE_VAR):  # CI (.ci/run) installs it
            pytest.fail(message)
        pytest.skip(message)
    as_owner = ["runuser", "-u", SUPERUSER, "--"] if os.geteuid() == 0 else []
    # Not under pytest's tmp_path: its root-only parent folders would keep `postgres` out.
    folder = Path(tempfile.mkdtemp(prefix="pg", dir="/tmp"))
    if as_owner:
        shutil.chown(folder, user=SUPERUSER)
    data, port = folder / "data", _free_port()
    pg_ctl = [*as_owner, str(bin_dir / "pg_ctl"), "-D", str(data)]

    def run(*command: str) -> None:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{' '.join(command)}: {done.stdout}{done.stderr}"

    try:
        run(*as_owner, str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust", "--no-sync",
            "--locale=C", "--encoding=UTF8")  # the C locale: no locale probing, a faster initdb
        # A test's database: no fsync, a socket in the folder (not /var/run/postgresql).
        options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={folder} -c fsync=off"
        run(*pg_ctl, "-o", options, "-l", str(folder / "server.log"), "-w", "-t", "60", "start")
        try:
            run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", SUPERUSER, name)
            yield f"postgresql+psycopg2://{SUPERUSER}@127.0.0.1:{port}/{name}"
        finally:
            subprocess.run([*pg_ctl, "-m", "immediate", "-w", "stop"], capture_output=True, timeout=60)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
