"""Tamper evidence: sign the report's provenance block, verify it and the files it names.

The provenance block (config, seed, versions, sha256 of the model weights and
of each data file, start and end time) is serialised canonically (sorted keys,
no whitespace) and signed with Ed25519. The signature and the public key travel
in the report. ``verify_report`` checks the signature, then re-hashes every
file the block names.

Key: the private key file in ``TRUSTFM_SIGNING_KEY`` (PEM, from ``trustfm
keygen``), else a key created once at ``~/.trustfm/signing-key.pem`` (mode
0600). Pass the signer's public key to ``verify`` to check *who* signed; without
it the check proves only that the block was not changed after signing.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from pathlib import Path

from pydantic import BaseModel

from trustfm.errors import ConfigError
from trustfm.fileio import write_bytes_atomic

log = logging.getLogger("trustfm.report")
DEFAULT_KEY = Path.home() / ".trustfm" / "signing-key.pem"


def canonical(data) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")


def generate_keypair(folder: str | Path) -> tuple[Path, Path]:
    """Write ``signing-key.pem`` (private, mode 0600) and ``signing-key.pub.pem`` into ``folder``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    private = Ed25519PrivateKey.generate()
    private_path, public_path = folder / "signing-key.pem", folder / "signing-key.pub.pem"
    write_bytes_atomic(private_path, private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()), mode=0o600)
    write_bytes_atomic(public_path, private.public_key().public_bytes(serialization.Encoding.PEM,
                                                                      serialization.PublicFormat.SubjectPublicKeyInfo))
    return private_path, public_path


def _load_private_key(path: Path | None):
    from cryptography.hazmat.primitives import serialization

    if path is None:
        env = os.environ.get("TRUSTFM_SIGNING_KEY")
        path = Path(env) if env else DEFAULT_KEY
        if not env and not path.exists():
            generate_keypair(path.parent)
            log.info("created a signing key at %s (set TRUSTFM_SIGNING_KEY to use your own)", path)
    if not path.is_file():
        raise ConfigError(f"signing key {path} does not exist (create one with `trustfm keygen`)")
    try:
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    except ValueError as exc:
        raise ConfigError(f"signing key {path} is not a PEM private key: {exc}") from None


def sign_provenance(provenance: dict, key_path: Path | None = None) -> dict:
    """Signature block for ``provenance``: algorithm, base64 public key (DER) and signature."""
    from cryptography.hazmat.primitives import serialization

    private = _load_private_key(key_path)
    public = private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return {
        "algorithm": "ed25519",
        "public_key": base64.b64encode(public).decode(),
        "signature": base64.b64encode(private.sign(canonical(provenance))).decode(),
        "signed": "canonical JSON of the provenance block (sorted keys, no whitespace)",
    }


class FileCheck(BaseModel):
    role: str  # fine-tuned model, base model, data
    path: str
    expected_sha256: str
    actual_sha256: str | None
    status: str  # ok, modified, missing


class VerifyResult(BaseModel):
    report: str
    signature_valid: bool
    signer_checked: bool  # a trusted public key was given and matched
    files: list[FileCheck]
    passed: bool
    problems: list[str]


def _report_json(path: Path) -> tuple[dict, Path]:
    """report.json content and the run folder, from report.json or report.html."""
    if path.suffix == ".html":
        import re

        match = re.search(r'<script type="application/json" id="trustfm-report">(.*?)</script>',
                          path.read_text(encoding="utf-8"), re.S)
        if not match:
            raise ConfigError(f"{path} has no embedded trustfm report data")
        return json.loads(match.group(1).replace("<\\/", "</")), path.parent
    if not path.is_file():
        raise ConfigError(f"report {path} does not exist")
    return json.loads(path.read_text(encoding="utf-8")), path.parent


def verify_report(path: str | Path, *, public_key: Path | None = None) -> VerifyResult:
    """Check the provenance signature and re-hash every model and data file it names."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization

    from trustfm.data.prepare import file_sha256

    path = Path(path)
    report, run_dir = _report_json(path)
    provenance, signature = report.get("provenance"), report.get("signature")
    problems: list[str] = []
    signature_valid = signer_checked = False
    if not provenance or not signature:
        problems.append("the report carries no signed provenance block")
    else:
        embedded = serialization.load_der_public_key(base64.b64decode(signature["public_key"]))
        key = embedded
        if public_key is not None:
            trusted = serialization.load_pem_public_key(Path(public_key).read_bytes())
            raw = lambda k: k.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)  # noqa: E731
            if raw(trusted) != raw(embedded):
                problems.append("the report was signed with a different key than the one given")
            key, signer_checked = trusted, raw(trusted) == raw(embedded)
        try:
            key.verify(base64.b64decode(signature["signature"]), canonical(provenance))
            signature_valid = True
        except InvalidSignature:
            problems.append("the provenance block was changed after it was signed")
    files: list[FileCheck] = []
    if provenance:
        expected = [("fine-tuned model", run_dir / "model" / name, digest)
                    for name, digest in provenance.get("model_sha256", {}).items()]
        base = provenance.get("base_model", {})
        expected += [("base model", Path(base.get("path", "")) / name, digest)
                     for name, digest in base.get("weights_sha256", {}).items()]
        expected += [("data", Path(name), digest) for name, digest in provenance.get("data_sha256", {}).items()]
        for role, file, digest in expected:
            actual = file_sha256(file) if file.exists() else None
            status = "missing" if actual is None else ("ok" if actual == digest else "modified")
            if status != "ok":
                problems.append(f"{role} file {file} is {status}")
            files.append(FileCheck(role=role, path=str(file), expected_sha256=digest, actual_sha256=actual, status=status))
    return VerifyResult(report=str(path), signature_valid=signature_valid, signer_checked=signer_checked,
                        files=files, passed=not problems, problems=problems)
