"""Encryption at rest: round trips, wrong or missing keys fail clearly, nothing partial is left behind."""

from __future__ import annotations

import json
import os

import pytest

from conftest import run_cli, write_csv
from trustfm.encryption import HEADER, is_encrypted, load_key, new_key_file, read_decrypted, write_encrypted
from trustfm.errors import ConfigError


def test_round_trip_and_tampering(tmp_path, monkeypatch):
    key_file = new_key_file(tmp_path / "key")
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    key = load_key(key_file)
    path = write_encrypted(tmp_path / "blob.bin", b"secret rows", key)
    assert is_encrypted(path) and path.read_bytes().startswith(HEADER) and b"secret" not in path.read_bytes()
    assert read_decrypted(path, key) == b"secret rows"
    with pytest.raises(ConfigError, match="wrong encryption key"):
        read_decrypted(path, os.urandom(32))
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="changed or cut short"):
        read_decrypted(path, key)
    monkeypatch.delenv("TRUSTFM_ENCRYPTION_KEY", raising=False)
    monkeypatch.delenv("TRUSTFM_ENCRYPTION_KEY_FILE", raising=False)
    with pytest.raises(ConfigError, match="no encryption key"):
        load_key()
    monkeypatch.setenv("TRUSTFM_ENCRYPTION_KEY", "too short")
    with pytest.raises(ConfigError, match="32-byte key"):
        load_key()
    with pytest.raises(ConfigError, match="already exists"):
        new_key_file(key_file)


def test_encrypted_redacted_copy_trains_and_checkpoints_are_encrypted(tiny_model_dir, tmp_path):
    from conftest import make_rows

    key_file = new_key_file(tmp_path / "key")
    rows = make_rows(200, seed=2)
    rows[0]["text"] += " mail anna@example.com"
    data = write_csv(tmp_path / "raw.csv", rows)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRUSTFM_ENCRYPTION_KEY_FILE": str(key_file)}
    env.pop("TRUSTFM_ENCRYPTION_KEY", None)
    out = tmp_path / "redacted.csv"
    done = run_cli(["data", "redact", str(data), "-o", str(out), "--encrypt"], capture_output=True,
                          text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert is_encrypted(out) and b"example.com" not in out.read_bytes()
    run_dir = tmp_path / "run"
    train = run_cli(["train", "--data", str(out), "--model", str(tiny_model_dir), "--epochs", "1",
                                  "--max-length", "32", "--quiet", "--set", "privacy.encrypt_checkpoints=true",
                                  "--set", "train.keep_checkpoints=true",
                                  "--set", "evaluate.bootstrap_samples=10", "-o", str(run_dir)],
                           capture_output=True, text=True, env=env)
    assert train.returncode == 0, train.stderr
    checkpoint = run_dir / "checkpoints" / "last.pt"
    assert is_encrypted(checkpoint)
    assert not list(run_dir.rglob("*.tmp"))
    # without the key, neither the data nor a resume can be read; the error says so, and exit code is 2
    no_key = {k: v for k, v in env.items() if not k.startswith("TRUSTFM_ENCRYPTION")}
    failed = run_cli(["data", "check", str(out), "--no-issues", "--format", "json"], capture_output=True,
                            text=True, env=no_key)
    assert failed.returncode == 2 and "no encryption key" in " ".join(failed.stderr.split())
    wrong = tmp_path / "wrong-key"
    new_key_file(wrong)
    failed = run_cli(["data", "check", str(out), "--no-issues"], capture_output=True, text=True,
                            env={**no_key, "TRUSTFM_ENCRYPTION_KEY_FILE": str(wrong)})
    assert failed.returncode == 2 and "wrong encryption key" in " ".join(failed.stderr.split())
    ok = run_cli(["data", "check", str(out), "--no-issues", "--format", "json"], capture_output=True,
                        text=True, env=env)
    assert ok.returncode == 0 and json.loads(ok.stdout)["rows"] == 200
