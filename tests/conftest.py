"""Shared fixtures: a tiny randomly initialised BERT and small synthetic datasets.

The tiny model is built from a config written here (2 layers, hidden size 32);
only its tokenizer files come from the default model package, so texts are
tokenised exactly as in real runs.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _isolated_home() -> str:
    # tests never write outside their temporary folders: ~/.trustfm (privacy ledger, signing key) included
    import tempfile

    home = tempfile.mkdtemp(prefix="trustfm-home-")
    os.environ["HOME"] = home
    return home


TEST_HOME = _isolated_home()


def _session_signing_key() -> str:
    # reports are signed; tests sign with a throw-away key instead of creating ~/.trustfm
    import tempfile

    from trustfm.report.provenance import generate_keypair

    private, _ = generate_keypair(tempfile.mkdtemp(prefix="trustfm-keys-"))
    return str(private)


os.environ["TRUSTFM_SIGNING_KEY"] = _session_signing_key()

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REPO = Path(__file__).resolve().parents[1]

POSITIVE_WORDS = ["great", "excellent", "love", "happy", "perfect", "wonderful", "fast", "friendly"]
NEGATIVE_WORDS = ["awful", "broken", "hate", "slow", "terrible", "rude", "refund", "disappointed"]
FILLER = ["the", "product", "service", "order", "was", "really", "and", "my", "delivery", "it", "support", "item"]


def run_cli(args, *, isolated: bool = False, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    """``trustfm ARGS...`` as the entry point runs it (:func:`trustfm.cli.main`); exit code and output captured
    as text, in a :class:`subprocess.CompletedProcess`.

    It runs in this process, with ``env`` as the environment meanwhile: what a test checks of a command (exit
    code, output, files) does not need a process of its own, and a child process would spend seconds importing
    torch and Transformers again. ``isolated=True`` starts a child process instead (``kwargs`` then go to
    :func:`subprocess.run`), for what does depend on it (torchrun, signals).
    """
    args = [str(a) for a in args]
    if isolated:
        return subprocess.run([sys.executable, "-m", "trustfm.cli", *args],
                              **{"capture_output": True, "text": True, "env": env, **kwargs})
    import contextlib
    import io

    from trustfm.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved = dict(os.environ)
    if env is not None:
        os.environ.clear()
        os.environ.update(env)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(args)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return subprocess.CompletedProcess(["trustfm", *args], code, out.getvalue(), err.getvalue())


def start_cli(args, **kwargs) -> subprocess.Popen:
    """``trustfm ARGS...`` started in a child process (for kill and concurrency tests); output to pipes."""
    return subprocess.Popen([sys.executable, "-m", "trustfm.cli", *(str(a) for a in args)],
                            **{"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, **kwargs})


def set_flags(overrides: dict) -> list[str]:
    """``--set key=json`` flags for every override (``output_dir`` included)."""
    import json

    return [flag for key, value in overrides.items() for flag in ("--set", f"{key}={json.dumps(value)}")]


def make_rows(n: int, seed: int = 0) -> list[dict]:
    """Separable synthetic sentiment rows: id, text, label (pos/neg), group (a/b)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = rng.sample(FILLER, rng.randint(2, 8))
        cue = rng.choice(POSITIVE_WORDS if label == "pos" else NEGATIVE_WORDS)
        words.insert(rng.randint(0, len(words)), cue)
        rows.append({"id": f"id{i}", "text": " ".join(words), "label": label, "group": "a" if rng.random() < 0.6 else "b"})
    return rows


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BERT with random weights, saved as safetensors."""
    import torch
    from transformers import BertConfig, BertModel

    from trustfm.models.loading import default_model_dir

    folder = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        source = default_model_dir() / name
        if source.exists():
            shutil.copy(source, folder / name)
    return folder


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """400 synthetic labelled rows as CSV (id, text, label, group)."""
    folder = tmp_path_factory.mktemp("data")
    return write_csv(folder / "train.csv", make_rows(400))


@pytest.fixture
def tiny_config(tiny_model_dir, tiny_data, tmp_path):
    """Overrides for a fast run on the tiny model and tiny data."""
    return {
        "data.train": str(tiny_data),
        "data.id_column": "id",
        "data.group_columns": ["group"],
        "data.max_length": 32,
        "model.name_or_path": str(tiny_model_dir),
        "train.epochs": 3,
        "train.batch_size": 16,
        "train.learning_rate": 3e-3,
        "evaluate.bootstrap_samples": 200,
        "output_dir": str(tmp_path / "run"),
    }


def shared_data(*parts: str) -> Path:
    """Path under ../shared/data, or skip the test with the reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared/data is not beside this checkout)")
    return path


@pytest.fixture(scope="session")
def parent_run(tiny_model_dir, tiny_data, tmp_path_factory):
    """A trained, evaluated run of the tiny BERT (3 epochs, group column ``group``): a parent to compress."""
    from trustfm.audit.performance.plugin import evaluate_run
    from trustfm.config import load_config
    from trustfm.train.run import train_run

    out = tmp_path_factory.mktemp("compress-parent") / "run"
    config = load_config(None, {
        "data.train": str(tiny_data), "data.id_column": "id", "data.group_columns": ["group"], "data.max_length": 32,
        "model.name_or_path": str(tiny_model_dir), "train.epochs": 3, "train.batch_size": 16,
        "train.learning_rate": 3e-3, "evaluate.bootstrap_samples": 200, "fairness.min_group_size": 5,
        "output_dir": str(out)})
    train_run(config, show_progress=False)
    evaluate_run(out)
    return out


# --- a real PostgreSQL for the request-log tests: a throw-away cluster (initdb in a temporary folder), started
# and stopped here. In CI (CI set) a missing PostgreSQL fails the tests; elsewhere they are skipped with the reason.


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory):
    """``postgresql+psycopg://...`` of a fresh cluster on a free loopback port."""
    bindir = _pg_bin()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed: .ci/run (make test) installs Debian's postgresql")
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    import tempfile

    # not under pytest's temporary folder: that one is private to this user, and the cluster's user must reach it
    root = Path(tempfile.mkdtemp(prefix="trustfm-pg-"))
    data, port = root / "data", free_port()
    as_user: list[str] = []
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root: the cluster belongs to the postgres user
        shutil.chown(root, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "trustfm",
                    "--no-sync"], check=True, capture_output=True, cwd=root)
    subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-o",
                    f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                   check=True, capture_output=True, cwd=root)
    try:
        for _ in range(50):
            if subprocess.run([str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                              capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        subprocess.run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "trustfm", "requests"],
                       check=True, capture_output=True)
        yield f"postgresql+psycopg://trustfm@127.0.0.1:{port}/requests"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], capture_output=True,
                       cwd=root)
        shutil.rmtree(root, ignore_errors=True)


def fresh_database(postgres_url: str, name: str) -> str:
    """The URL of a new, empty database ``name`` in the cluster of ``postgres_url`` (dropped first if there)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return postgres_url.rsplit("/", 1)[0] + f"/{name}"


class Server:
    """``trustfm serve RUN --port P ARGS...`` in a child process, ready when this returns; ``stop()`` sends
    SIGTERM and returns (exit code, output)."""

    def __init__(self, run, *args, wait: bool = True):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = start_cli(["serve", str(run), "--port", str(self.port), *args])
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        """Return once ``/readyz`` answers 200 (AssertionError with the output if the server exits first)."""
        for _ in range(300):
            if self.process.poll() is not None:
                raise AssertionError(f"server exited: {self.process.stderr.read()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError("server did not become ready")

    def stop(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGTERM)
        out, err = self.process.communicate(timeout=60)
        return self.process.returncode, out + err


def post_json(server, path, body, key=None, **headers):
    """POST ``body`` (a JSON-able value, or raw bytes) to the live ``server`` with an optional API key."""
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return httpx.post(f"{server.url}{path}", content=body if isinstance(body, bytes) else json.dumps(body),
                      headers={"content-type": "application/json", **headers}, timeout=30)


@pytest.fixture
def federation(tiny_model_dir, tiny_data, tmp_path):
    """``write(name="fed", **federated) -> config path``: the tiny run with a ``federated:`` block (3 clients,
    2 rounds unless overridden), written as YAML under ``tmp_path``; its run folder is ``tmp_path / name``."""
    import yaml

    def write(name="fed", **federated):
        config = {
            "output_dir": str(tmp_path / name),
            "data": {"train": str(tiny_data), "id_column": "id", "group_columns": ["group"], "max_length": 32},
            "model": {"name_or_path": str(tiny_model_dir)},
            "train": {"batch_size": 16, "learning_rate": 3e-3},
            "evaluate": {"bootstrap_samples": 100},
            "federated": {"clients": 3, "rounds": 2, **federated},
        }
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    return write


@pytest.fixture
def tune_config(tiny_model_dir, tiny_data, tmp_path):
    """``write(name="study", **tune) -> config path``: the tiny run with a ``tune:`` block (learning rate and
    batch size searched, 4 trials, 2 epochs each unless overridden), written as YAML under ``tmp_path``; its study
    folder is ``tmp_path / name``. ``config=`` takes more top-level keys (``privacy``, ...)."""
    import yaml

    def write(name="study", config=None, **tune):
        document = {
            "output_dir": str(tmp_path / name),
            "data": {"train": str(tiny_data), "id_column": "id", "group_columns": ["group"], "max_length": 32},
            "model": {"name_or_path": str(tiny_model_dir)},
            "train": {"batch_size": 16, "learning_rate": 3e-3, "epochs": 2},
            "evaluate": {"bootstrap_samples": 50},
            "fairness": {"sensitive": ["group"], "min_group_size": 5},
            "tune": {"space": {"train.learning_rate": {"log_uniform": [1e-4, 1e-2]},
                               "train.batch_size": {"choice": [16, 32]}},
                     "trials": 4, "startup_trials": 2, **tune},
            **(config or {}),
        }
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(document))
        return path

    return write


# --- image runs: the generated shapes (a background group with a planted disadvantage) at 32 px, on the real
# EfficientNet-Lite0 weights (17 MB, shipped in a package: loading them takes a fraction of a second)


@pytest.fixture(scope="session")
def image_data(tmp_path_factory) -> Path:
    """``images.csv`` (image, label, background) of 150 generated shape images, 32 px."""
    from trustfm.data.image_datasets import write_shapes

    return write_shapes(tmp_path_factory.mktemp("shapes"), n=150, size=32, seed=0)


def image_overrides(image_data: Path, output_dir: Path, **more) -> dict:
    """Config overrides of a small image run on ``image_data`` (2 epochs, 32 px, a 10% holdout for membership).

    One torch thread: the threads change the floating-point sums, and on 150 images the model they give (15 test
    images) differs visibly (accuracy 0.47 with one thread, 0.67 with two, at 2e-3); the default takes the idle
    cores, which depend on what else runs, so the suite pins them."""
    return {"output_dir": str(output_dir), "data.train": str(image_data), "data.modality": "image",
            "data.group_columns": ["background"], "fairness.sensitive": ["background"], "data.image.size": 32,
            "data.split.holdout": 0.1, "train.epochs": 2, "train.batch_size": 16, "train.learning_rate": 3e-3,
            "train.num_threads": 1, "evaluate.bootstrap_samples": 50, **more}


@pytest.fixture(scope="session")
def image_run(image_data, tmp_path_factory) -> Path:
    """A trained and evaluated image run folder (shared: tests read it, or copy it before changing it)."""
    from trustfm.config import load_config
    from trustfm.pipeline import train_and_evaluate

    overrides = image_overrides(image_data, tmp_path_factory.mktemp("image-run") / "run")
    return train_and_evaluate(load_config(None, overrides), show_progress=False).root


def bomb_png(path: Path, width: int = 50_000, height: int = 50_000) -> Path:
    """A valid PNG header declaring ``width`` x ``height`` and a tiny compressed body: a decompression bomb's shape."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = zlib.compress(b"\x00" * 1024)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


# --- the operators' tools of a multi-replica deployment (Debian's nginx, prometheus, prometheus-alertmanager),
# run from the files in deploy/ with their loopback ports replaced by free ones


def ops_binary(name: str) -> str:
    """The path of ``name`` (nginx, prometheus, promtool, prometheus-alertmanager); in CI a missing one fails
    the test, elsewhere it is skipped with the reason."""
    found = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)),
                                       None)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed: .ci/run (make test, target ops) installs it from Debian")
        pytest.skip(f"{name} is not installed (Debian: apt-get install nginx prometheus prometheus-alertmanager)")
    return found


def deploy_file(relative: str, folder: Path, replacements: dict[str, str]) -> Path:
    """deploy/RELATIVE copied into ``folder`` with each ``replacements`` key replaced by its value (every key
    must occur: the test runs the shipped file, not another)."""
    text = (REPO / "deploy" / relative).read_text(encoding="utf-8")
    for old, new in replacements.items():
        assert old in text, f"{old!r} is not in deploy/{relative}"
        text = text.replace(old, new)
    target = folder / Path(relative).name
    target.write_text(text, encoding="utf-8")
    return target


class Background:
    """A child process (an operator's tool) with its output in a file; ``stop()`` terminates it."""

    def __init__(self, args: list[str], *, log: Path, cwd: Path | None = None):
        self.log = log
        self._handle = log.open("w")
        self.process = subprocess.Popen([str(a) for a in args], stdout=self._handle, stderr=subprocess.STDOUT,
                                        cwd=cwd)

    def wait_http(self, url: str, *, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.process.args[0]} exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(url, timeout=1).status_code < 500:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{url} did not answer: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._handle.close()
