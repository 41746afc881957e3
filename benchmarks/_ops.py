"""Operators' components for the serving benchmark: a throw-away PostgreSQL cluster and nginx in front of
replicas (Debian's packages; deploy/nginx/trustfm.conf as shipped, with its ports replaced)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def postgres_cluster():
    """``postgresql+psycopg://...`` of a fresh cluster on loopback (initdb in a temporary folder), stopped after."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise SystemExit("needs PostgreSQL (Debian: apt-get install postgresql)")
    bindir = Path(found[-1]).parent
    root, port = Path(tempfile.mkdtemp(prefix="trustfm-bench-pg-")), free_port()
    as_user = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        shutil.chown(root, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_user, bindir / "initdb", "-D", root / "data", "-A", "trust", "-U", "trustfm", "--no-sync"],
                   check=True, capture_output=True, cwd=root)
    # durable commits, as a deployment runs it (the tests' clusters turn fsync off)
    subprocess.run([*as_user, bindir / "pg_ctl", "-D", root / "data", "-l", root / "log", "-w", "-o",
                    f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=200", "start"],
                   check=True, capture_output=True, cwd=root)
    try:
        subprocess.run([bindir / "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "trustfm", "trustfm"],
                       check=True, capture_output=True)
        yield f"postgresql+psycopg://trustfm@127.0.0.1:{port}/trustfm"
    finally:
        subprocess.run([*as_user, bindir / "pg_ctl", "-D", root / "data", "-m", "fast", "stop"], capture_output=True,
                       cwd=root)
        shutil.rmtree(root, ignore_errors=True)


def start_nginx(upstream_ports: list[int], port: int, folder: Path) -> subprocess.Popen:
    """nginx from deploy/nginx/trustfm.conf in front of two replicas on ``upstream_ports``, listening on ``port``."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    text = (REPO / "deploy" / "nginx" / "trustfm.conf").read_text()
    for old, new in {"127.0.0.1:8001": f"127.0.0.1:{upstream_ports[0]}",
                     "127.0.0.1:8002": f"127.0.0.1:{upstream_ports[1]}",
                     "listen 127.0.0.1:8080": f"listen 127.0.0.1:{port}"}.items():
        text = text.replace(old, new)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "trustfm.conf").write_text(text)
    process = subprocess.Popen([nginx, "-p", str(folder), "-c", "trustfm.conf", "-e", "stderr", "-g", "daemon off;"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(0.5)
    return process
