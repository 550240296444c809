"""A throwaway PostgreSQL server for the tests, CI and benchmarks/distributed.py (standard library only).

``start(folder)`` runs initdb on ``folder/data`` and starts the server on 127.0.0.1 (a free port, trust
authentication, no fsync: nothing here must survive) and returns its URL; ``stop(folder)`` stops it
and deletes the folder. Run as root, the server runs as the ``postgres`` user (PostgreSQL refuses root).

    python tests/pgserver.py start DIR     # prints the URL
    python tests/pgserver.py stop DIR
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

DATABASE = "robustprune"


def find_bin() -> Path | None:
    """The folder of initdb/pg_ctl: $PG_BIN, else the newest /usr/lib/postgresql/N/bin, else initdb on PATH."""
    if os.environ.get("PG_BIN"):
        return Path(os.environ["PG_BIN"])
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(re.findall(r"/(\d+)/", p)[0]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _run(command: list[str]) -> None:
    out = subprocess.run(_as_server_user(command), capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:2])} failed: {(out.stderr or out.stdout).strip()[-500:]}")


def start(folder: str | os.PathLike, options: str = "") -> str:
    """Start a server whose files live in ``folder`` (``options``: more ``-c name=value`` settings);
    returns its SQLAlchemy URL (psycopg 3 driver)."""
    bin_dir = find_bin()
    if bin_dir is None:
        raise RuntimeError("no PostgreSQL server binaries (apt-get install postgresql, or set PG_BIN)")
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sock").mkdir(exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        shutil.chown(folder / "sock", "postgres")
    data, port = folder / "data", _free_port()
    _run([str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"])
    settings = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder / 'sock'} -c fsync=off -c max_connections=300"
    options = f"{settings} {options}".strip()
    _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-w", "-o", options, "start"])
    (folder / "port").write_text(str(port))
    (folder / "options").write_text(options)  # for up()
    _run([str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", DATABASE])
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/{DATABASE}"


def restart(folder: str | os.PathLike) -> None:
    """Restart the server started in ``folder`` as a crash would (immediate: open connections are cut)."""
    bin_dir, folder = find_bin(), Path(folder).resolve()
    # -l again: pg_ctl restart reuses the server's options but not its log, and a server writing to our pipe
    # would keep _run waiting for ever
    command = [str(bin_dir / "pg_ctl"), "-D", str(folder / "data"), "-l", str(folder / "server.log")]
    _run([*command, "-m", "immediate", "-w", "restart"])


def down(folder: str | os.PathLike) -> None:
    """Stop the server started in ``folder`` as a crash would, keeping its files for up()."""
    bin_dir, folder = find_bin(), Path(folder).resolve()
    _run([str(bin_dir / "pg_ctl"), "-D", str(folder / "data"), "-m", "immediate", "-w", "stop"])


def up(folder: str | os.PathLike) -> None:
    """Start again, on the same port, the server down() stopped."""
    bin_dir, folder = find_bin(), Path(folder).resolve()
    options = (folder / "options").read_text()
    command = [str(bin_dir / "pg_ctl"), "-D", str(folder / "data"), "-l", str(folder / "server.log")]
    _run([*command, "-w", "-o", options, "start"])


def stop(folder: str | os.PathLike) -> None:
    """Stop the server started in ``folder`` (if it runs) and delete the folder."""
    folder = Path(folder)
    bin_dir = find_bin()
    if bin_dir is not None and (folder / "data" / "postmaster.pid").exists():
        subprocess.run(
            _as_server_user([str(bin_dir / "pg_ctl"), "-D", str(folder / "data"), "-m", "immediate", "-w", "stop"]),
            capture_output=True,
        )
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    action, where = sys.argv[1:3]
    if action == "start":
        print(start(where))
    else:
        stop(where)
