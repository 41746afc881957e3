"""A real deployment on loopback: one Flower SuperLink and three SuperNodes, started here as processes; one
SuperNode is killed mid-round and training goes on without it."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import free_port, run_cli, start_cli


def _start(command: list[str], log: Path, home: Path) -> subprocess.Popen:
    # a session of its own: a SuperNode starts helper processes (SuperExec, one ClientApp per message), and killing
    # the group is what a machine failing does to all of them
    # the SuperLink and SuperNodes start Flower's other executables by name: this environment's come first
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "FLWR_HOME": str(home), "PATH": path})


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=30)


@pytest.fixture
def superlink(tmp_path):
    """``(address, nodes, logs)``: a SuperLink on a free port and SuperNodes for partitions 0, 1 and 2."""
    bin_dir = Path(sys.executable).parent
    home = tmp_path / "flwr-home"
    home.mkdir()
    port = free_port()
    processes = [_start([str(bin_dir / "flower-superlink"), "--insecure", "--port", str(port),
                         "--health-server-address", f"127.0.0.1:{free_port()}"], tmp_path / "superlink.log", home)]
    for _ in range(100):
        if "Uvicorn running" in (tmp_path / "superlink.log").read_text():
            break
        time.sleep(0.2)
    else:
        _kill_group(processes[0])
        raise AssertionError((tmp_path / "superlink.log").read_text()[-2000:])
    logs = [tmp_path / f"supernode-{i}.log" for i in range(3)]
    nodes = [_start([str(bin_dir / "flower-supernode"), "--insecure", "--superlink", f"127.0.0.1:{port}",
                     "--port", str(free_port()), "--node-config", f"partition-id={i}"], logs[i], home)
             for i in range(3)]
    try:
        yield f"127.0.0.1:{port}", nodes, logs
    finally:
        for process in [*nodes, *processes]:
            _kill_group(process)


def test_deployment_trains_like_the_simulation_and_survives_a_killed_supernode(superlink, federation, tmp_path):
    address, nodes, logs = superlink
    # a round's first message starts a ClientApp process per SuperNode (torch and Transformers imported three times
    # at once on a small machine): the timeout leaves room for that, and bounds the wait for the killed node
    config = federation(client_evaluation="final", round_timeout=60)
    cli = start_cli(["federate", config, "--superlink", address, "-o", tmp_path / "deployed", "--quiet",
                     "--format", "json"])
    # kill SuperNode 2 (with its ClientApp) once it has received round 2's training message
    deadline = time.monotonic() + 240
    while logs[2].read_text().count("Receiving: train") < 2:
        assert cli.poll() is None, cli.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "round 2 never reached SuperNode 2"
        time.sleep(0.2)
    _kill_group(nodes[2])
    out, err = cli.communicate(timeout=300)
    assert cli.returncode == 0, err[-3000:]
    deployed = json.loads(out)
    assert deployed["mode"] == "deployment" and deployed["rounds_completed"] == 2
    first, second = deployed["rounds"]
    assert first["clients"] == [0, 1, 2] and not first["failed"], first["failed"]
    assert second["clients"] == [0, 1]
    assert [f["client"] for f in second["failed"]] == [2]  # traced to the client, whoever wrote the error
    assert deployed["client_failures"] >= 1
    assert {c["client"] for c in deployed["client_records"] if c["accuracy"] is not None} == {0, 1}

    # the same config simulated in one process: round 1 (before the kill) gives the same global model
    simulated = run_cli(["federate", config, "-o", tmp_path / "simulated", "--quiet", "--format", "json"])
    assert simulated.returncode == 0, simulated.stderr[-3000:]
    simulated = json.loads(simulated.stdout)
    assert simulated["rounds"][0]["validation"] == pytest.approx(first["validation"], abs=1e-6)
    # and the deployed run folder is a normal one
    assert run_cli(["evaluate", tmp_path / "deployed"]).returncode == 0
