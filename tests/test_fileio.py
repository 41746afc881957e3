"""Crash safety: killed at any moment, train, audit, report and ``data redact`` leave old or complete files.

Each command is first timed on a complete run, then started again and sent
SIGKILL at several fractions of that time. After each kill every file in its
output is checked to be complete (it parses, loads, or ends where it should);
then a rerun (or ``train --resume``) must succeed. The one exception is the
append-only step log ``logs/metrics.jsonl``: a kill may cut its last line, which
its reader skips and ``--resume`` trims.

Resource faults: a full disk (a small tmpfs, or a simulated ENOSPC where it
cannot be mounted) and a read-only folder give one clear line, exit 5, and no
partial file.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import make_rows, run_cli, set_flags, start_cli, write_csv
from trustfm.errors import OutputError
from trustfm.fileio import atomic_path, leftover_temporaries, write_json_atomic, write_text_atomic

KILL_FRACTIONS = (0.15, 0.4, 0.65, 0.9)  # of the command's full run time; the suite's time bounds how many
APPEND_ONLY = {"metrics.jsonl"}


def _complete(path: Path) -> str | None:
    """Why ``path`` is not a complete file of its kind, or None when it is."""
    name, suffix = path.name, path.suffix
    try:
        if suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif suffix == ".jsonl":
            lines = path.read_text(encoding="utf-8").splitlines()
            if name in APPEND_ONLY:
                lines = lines[:-1]  # the last line of an append-only log may be cut
            for line in lines:
                json.loads(line)
        elif suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                list(handle.keys())
        elif suffix == ".pt":
            import torch

            torch.load(path, map_location="cpu", weights_only=False)
        elif suffix == ".html":
            if not path.read_text(encoding="utf-8").rstrip().endswith("</html>"):
                return "HTML cut short"
        elif suffix in (".yaml", ".yml"):
            import yaml

            yaml.safe_load(path.read_text(encoding="utf-8"))
        elif suffix == ".csv":
            import pandas as pd

            pd.read_csv(path)
    except Exception as exc:  # noqa: BLE001 - any failure to parse is what this check reports
        return f"{type(exc).__name__}: {exc}"
    return None


def _incomplete_files(folder: Path) -> dict[str, str]:
    temporaries = set(leftover_temporaries(folder))
    problems = {}
    for path in folder.rglob("*"):
        if path.is_file() and path not in temporaries and not path.name.endswith(".lock"):
            why = _complete(path)
            if why:
                problems[str(path.relative_to(folder))] = why
    return problems


def _timed(args) -> float:
    start = time.monotonic()
    done = run_cli(args)
    assert done.returncode == 0, done.stderr
    return time.monotonic() - start


def _kill_after(args, seconds: float) -> None:
    proc = start_cli(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


@pytest.fixture
def run_overrides(tiny_config, tmp_path):
    return {**tiny_config, "train.epochs": 3, "output_dir": str(tmp_path / "run")}


def test_train_killed_at_any_point_resumes_or_reruns_to_a_complete_run(run_overrides, tmp_path):
    args = ["train", "--quiet", *set_flags(run_overrides)]
    full = _timed(args)
    shutil.rmtree(tmp_path / "run")
    for fraction in KILL_FRACTIONS[::2]:  # early (before the first checkpoint) and mid-run
        run = tmp_path / "run"
        _kill_after(args, full * fraction)
        if run.exists():
            assert _incomplete_files(run) == {}, fraction
        again = (["train", "--resume", run, "--quiet"] if (run / "run.json").exists() and
                 (run / "config.yaml").exists() else args)
        done = run_cli(again)
        assert done.returncode == 0, (fraction, done.stderr)
        assert json.loads((run / "run.json").read_text())["status"] == "complete"
        assert _incomplete_files(run) == {}
        shutil.rmtree(run)


def test_audit_and_report_killed_at_any_point_leave_old_or_complete_files(run_overrides, tmp_path):
    run = Path(run_overrides["output_dir"])
    assert run_cli(["train", "--quiet", *set_flags({**run_overrides, "train.epochs": 1})]).returncode == 0
    for command, fractions in ((["audit", "all", run], KILL_FRACTIONS[2:3]), (["report", run], KILL_FRACTIONS[1::2])):
        full = _timed(command)
        for fraction in fractions:
            _kill_after(command, full * fraction)
            assert _incomplete_files(run) == {}, (command, fraction)
            done = run_cli(command)
            assert done.returncode == 0, (command, fraction, done.stderr)
    assert _incomplete_files(run) == {}


def test_data_redact_killed_at_any_point_leaves_no_partial_copy(tmp_path):
    source = write_csv(tmp_path / "in.csv", make_rows(300))
    out = tmp_path / "out.csv"
    args = ["data", "redact", source, "-o", out]
    full = _timed(args)
    out.unlink()
    for fraction in KILL_FRACTIONS[2:3]:
        _kill_after(args, full * fraction)
        if out.exists():
            import pandas as pd

            assert len(pd.read_csv(out)) == 300, fraction
        assert run_cli(args).returncode == 0
        out.unlink()


# --- resource faults


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (root only); None where it cannot be mounted."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        yield None
        return
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _fill(folder: Path) -> None:
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


def test_a_full_disk_gives_one_clear_line_and_no_partial_file(small_disk, tmp_path, monkeypatch, capsys):
    from trustfm.cli import main

    source = write_csv(tmp_path / "in.csv", make_rows(200))
    if small_disk is None:  # no mount here: simulate the device running out of space mid-write
        def full(self, data):
            with open(self, "wb") as handle:
                handle.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

        target = tmp_path / "full"
        target.mkdir()
        (target / "report.json").write_text('{"old": true}')
        monkeypatch.setattr(Path, "write_bytes", full)
    else:
        target = small_disk
        (target / "report.json").write_text('{"old": true}')
        _fill(target)
    with pytest.raises(OutputError, match="no space left"):
        write_json_atomic(target / "report.json", {"numbers": list(range(100_000))})
    assert json.loads((target / "report.json").read_text()) == {"old": True}  # the old version stays
    assert leftover_temporaries(target) == []
    monkeypatch.undo()
    if small_disk is not None:
        code = main(["data", "redact", str(source), "-o", str(target / "out.csv")])
        err = capsys.readouterr().err
        assert code == 5 and "no space left on the device" in err and "Traceback" not in err
        assert not (target / "out.csv").exists() and leftover_temporaries(target) == []


def test_a_read_only_folder_gives_one_clear_line_and_no_partial_file(small_disk, tmp_path, capsys):
    from trustfm.cli import main

    if small_disk is None:
        pytest.skip("a read-only folder needs a read-only mount (root only); root ignores permission bits")
    source = write_csv(tmp_path / "in.csv", make_rows(50))
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    code = main(["data", "redact", str(source), "-o", str(small_disk / "out.csv")])
    err = capsys.readouterr().err
    assert code == 5 and "read-only file system" in err and "Traceback" not in err
    assert list(small_disk.iterdir()) == []


def test_atomic_writes_replace_whole_files_and_clean_up_after_a_failure(tmp_path):
    target = tmp_path / "result.json"
    write_json_atomic(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"v": 2, "cut')
            raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"v": 1}
    assert leftover_temporaries(tmp_path) == []
    write_text_atomic(tmp_path / "key", "secret", mode=0o600)
    assert (tmp_path / "key").stat().st_mode & 0o777 == 0o600
    # a folder replaces a folder whole (the model folder)
    with atomic_path(tmp_path / "model") as tmp:
        tmp.mkdir()
        (tmp / "a").write_text("1")
    with atomic_path(tmp_path / "model") as tmp:
        tmp.mkdir()
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["b"]
