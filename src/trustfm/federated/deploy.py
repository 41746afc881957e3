"""A real deployment: the run is submitted to a Flower SuperLink with ``flwr run``; its SuperNodes train.

The SuperLink and SuperNodes are started by whoever runs the federation (see ``docs/federated.md``)::

    flower-superlink --insecure --port 9091
    flower-supernode --insecure --superlink 127.0.0.1:9091 --port 9101 --node-config "partition-id=0"

``submit_run`` writes a Flower App (a ``pyproject.toml`` naming :mod:`trustfm.federated.flower_app`'s
``server_app`` and ``client_app``) into the run folder, a SuperLink connection into a private ``FLWR_HOME``, and
runs ``flwr run --stream`` until the ServerApp has finished.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from trustfm.errors import ConfigError, TrustfmError

APP_DIR = "flower-app"
FLWR_HOME = "flower-home"
CONNECTION = "trustfm"


def parse_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"--superlink {address!r}: expected HOST:PORT of the SuperLink's HTTP API (its --port), "
                          "e.g. 127.0.0.1:9091")
    return host.strip("[]"), int(port)


def check_reachable(address: str, *, timeout: float) -> None:
    """A clear error, after at most ``timeout`` seconds, when nothing accepts connections at ``address``."""
    host, port = parse_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__).lower()
        raise ConfigError(f"cannot reach the Flower SuperLink at {address} ({why} within {timeout:g} s): start it "
                          "with `flower-superlink --insecure --port PORT`, or give its address with --superlink"
                          ) from None


def write_flower_app(run_dir: Path) -> Path:
    """The Flower App folder ``flwr run`` packages: its components live in the installed trustfm."""
    app = run_dir / APP_DIR
    app.mkdir(parents=True, exist_ok=True)
    (app / "pyproject.toml").write_text(f'''[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "trustfm-federated"
version = "1.0.0"
description = "trustfm federated fine-tuning of the run in {run_dir.name}"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "trustfm"

[tool.flwr.app.components]
serverapp = "trustfm.federated.flower_app:server_app"
clientapp = "trustfm.federated.flower_app:client_app"

[tool.flwr.app.config]
run-dir = "{run_dir.resolve()}"
''')
    return app


def _flwr_executable() -> str:
    found = Path(sys.executable).with_name("flwr")
    return str(found) if found.exists() else (shutil.which("flwr") or "flwr")


def submit_run(run_dir: Path, address: str, *, timeout: float) -> None:
    """``flwr run`` the run folder's Flower App on the SuperLink at ``address``; returns when the run has ended."""
    app = write_flower_app(run_dir)
    home = run_dir / FLWR_HOME
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(f'''[superlink]
default = "{CONNECTION}"

[superlink.{CONNECTION}]
address = "{address}"
insecure = true
''')
    env = {**os.environ, "FLWR_HOME": str(home)}
    command = [_flwr_executable(), "run", str(app), CONNECTION, "--stream"]
    try:
        done = subprocess.run(command, env=env, timeout=timeout, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    except subprocess.TimeoutExpired:
        raise TrustfmError(f"the federated run on {address} did not finish within {timeout:.0f} s") from None
    (run_dir / "logs").mkdir(exist_ok=True)
    (run_dir / "logs" / "flwr-run.log").write_text(done.stdout or "")
    if done.returncode != 0:
        tail = [line for line in (done.stdout or "").splitlines() if line.strip()][-1:] or ["(no output)"]
        raise TrustfmError(f"flwr run failed on {address} (exit {done.returncode}): {tail[0][:300]}; "
                           f"full output in {run_dir / 'logs' / 'flwr-run.log'}")
