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


SIGNATURE_PLACEHOLDER = "@@TRUSTFM-SIGNATURE@@"
HTML_HASH_PLACEHOLDER = "@@TRUSTFM-HTML-SHA256@@"
SIGNED = ("canonical JSON (sorted keys, no whitespace) of {report: report.json without its signature block, "
          "html_sha256: sha256 of report.html with this block's value and html_sha256 replaced by placeholders}")


def signature_block(key_path: Path | None = None) -> tuple[dict, object]:
    """The signature block with placeholders for the signature and the HTML hash, and the private key."""
    from cryptography.hazmat.primitives import serialization

    private = _load_private_key(key_path)
    public = private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    block = {"algorithm": "ed25519", "public_key": base64.b64encode(public).decode(), "signed": SIGNED,
             "value": SIGNATURE_PLACEHOLDER, "html_sha256": HTML_HASH_PLACEHOLDER}
    return block, private


def signed_payload(report: dict, html_sha256: str) -> bytes:
    """What the signature covers: every number of the report (all but its signature block) and the page's hash."""
    return canonical({"report": {k: v for k, v in report.items() if k != "signature"}, "html_sha256": html_sha256})


def seal(report: dict, html: str, private_key) -> tuple[dict, str]:
    """Sign ``report`` (holding a placeholder :func:`signature_block`) together with ``html`` (rendered from it).

    Returns the report with its signature block filled in and the HTML with the
    same values in place of the placeholders.
    """
    import hashlib

    html_sha256 = hashlib.sha256(html.encode("utf-8")).hexdigest()
    value = base64.b64encode(private_key.sign(signed_payload(report, html_sha256))).decode()
    sealed = {**report, "signature": {**report["signature"], "value": value, "html_sha256": html_sha256}}
    return sealed, html.replace(SIGNATURE_PLACEHOLDER, value).replace(HTML_HASH_PLACEHOLDER, html_sha256)


class FileCheck(BaseModel):
    role: str  # fine-tuned model, base model, data, result, run file
    path: str
    expected_sha256: str | None  # None: the file is not in the signed report (status added)
    actual_sha256: str | None
    status: str  # ok, modified, missing, added (in the run folder, not covered by the signature)
    relative: str | None = None  # the path inside the run folder (files of the run folder only)


class VerifyResult(BaseModel):
    report: str
    signature_valid: bool
    signer_checked: bool  # a trusted public key was given and matched
    html_checked: bool  # report.html is byte for byte the page that was signed
    files: list[FileCheck]  # run-folder, base model and data files re-hashed against the signed hashes
    not_checked: list[str] = []  # checks that need the run folder, when the report is outside it
    passed: bool
    problems: list[str]

    def unsound(self, prefixes: tuple[str, ...]) -> list[FileCheck]:
        """Run-folder files under any of ``prefixes`` (``"model/"``, ``"run.json"``) that are not as signed:
        modified, missing, or added after signing."""
        return [f for f in self.files if f.relative is not None and f.status != "ok"
                and any(f.relative == p or (p.endswith("/") and f.relative.startswith(p)) for p in prefixes)]


_EMBEDDED = r'<script type="application/json" id="trustfm-report">(.*?)</script>'


def _read_report(path: Path) -> tuple[dict, Path, str | None]:
    """report.json content, the folder it sits in, and the HTML text (from report.html, or the one beside)."""
    import re

    if not path.is_file():
        raise ConfigError(f"report {path} does not exist")
    html_path = path if path.suffix == ".html" else path.with_name("report.html")
    html = html_path.read_text(encoding="utf-8") if html_path.is_file() else None
    if path.suffix == ".html":
        match = re.search(_EMBEDDED, html, re.S)
        if not match:
            raise ConfigError(f"{path} has no embedded trustfm report data")
        return json.loads(match.group(1).replace("<\\/", "</")), path.parent, html
    try:
        return json.loads(path.read_text(encoding="utf-8")), path.parent, html
    except json.JSONDecodeError:
        raise ConfigError(f"{path} is not a trustfm report (not JSON)") from None


def _html_hash(html: str, signature: dict) -> str:
    import hashlib

    restored = html.replace(signature["value"], SIGNATURE_PLACEHOLDER).replace(signature["html_sha256"],
                                                                                 HTML_HASH_PLACEHOLDER)
    return hashlib.sha256(restored.encode("utf-8")).hexdigest()


def _role(relative: str) -> str:
    return {"model": "fine-tuned model", "results": "result"}.get(relative.split("/", 1)[0], "run file")


def _check_files(expected: list[tuple[str, Path, str, str | None]], problems: list[str]) -> list[FileCheck]:
    """Re-hash (role, path, signed sha256, path in the run folder) entries; a problem line for each that differs."""
    from trustfm.data.prepare import file_sha256

    checks = []
    for role, file, digest, relative in expected:
        actual = file_sha256(file) if file.is_file() else None
        status = "missing" if actual is None else ("ok" if actual == digest else "modified")
        if status != "ok":
            problems.append(f"{role} file {file} is {status}"
                            + (" (changed after the report was signed, or a later audit rewrote it: rerun "
                               "`trustfm report`)" if role == "result" and status == "modified" else ""))
        checks.append(FileCheck(role=role, path=str(file), expected_sha256=digest, actual_sha256=actual,
                                status=status, relative=relative))
    return checks


def _check_data(folder: Path, recorded: dict[str, str], problems: list[str]) -> list[FileCheck]:
    """Each data file's hash, computed again the way training recorded it (an image table with its images)."""
    from trustfm.config import load_config
    from trustfm.data.prepare import recorded_data_hash
    from trustfm.errors import TrustfmError
    from trustfm.runs import RunRecord, RunPaths

    config = load_config(folder / "config.yaml").data
    train = str(config.train) if config.train is not None else None
    label_names = RunRecord.load(RunPaths(folder)).label_names
    checks = []
    for name, digest in recorded.items():
        path = Path(name)
        actual, why = None, ""
        if path.exists():
            try:
                actual = recorded_data_hash(path, config, known_labels=None if name == train else label_names)
            except TrustfmError as exc:
                why = f" ({exc})"
        status = "ok" if actual == digest else ("missing" if not path.exists() else "modified")
        if status != "ok":
            problems.append(f"data file {path} is {status}{why}")
        checks.append(FileCheck(role="data", path=str(path), expected_sha256=digest, actual_sha256=actual,
                                status=status))
    return checks


def _check_model_card(folder: Path, report: dict, problems: list[str]) -> None:
    """``model_card.md`` is rendered from the signed report: it must read exactly as that rendering."""
    from trustfm.report.model_card import render_markdown

    card = folder / "model_card.md"
    if card.is_file() and "model_card" in report:
        if card.read_text(encoding="utf-8") != render_markdown(report["model_card"]):
            problems.append(f"{card} differs from the model card in the signed report")


def _run_folder_checks(folder: Path, report: dict, provenance: dict, problems: list[str], *,
                       check_data: bool) -> list[FileCheck]:
    """Every file check that needs the run folder: its files against the signed manifest (and any file the
    manifest does not list), the base model's weights and the data files."""
    from trustfm.runs import signed_run_files

    signed = report.get("run_files_sha256")
    if signed is not None:
        expected = [(_role(rel), folder / rel, digest, rel) for rel, digest in signed.items()]
    else:  # a report from before the whole folder was signed: the model and the results only
        expected = [("fine-tuned model", folder / "model" / name, digest, f"model/{name}")
                    for name, digest in provenance.get("model_sha256", {}).items()]
        expected += [("result", folder / "results" / f"{stem}.json", digest, f"results/{stem}.json")
                     for stem, digest in report.get("results_sha256", {}).items()]
    base = provenance.get("base_model", {})
    # the base model's path is its folder (an image run of older versions recorded the weight file itself)
    base_dir = Path(base.get("path", ""))
    base_dir = base_dir.parent if base_dir.is_file() else base_dir
    expected += [("base model", base_dir / name, digest, None) for name, digest in base.get("weights_sha256", {}).items()]
    checks = _check_files(expected, problems)
    if signed is not None:
        for rel in signed_run_files(folder):
            if rel not in signed:
                role = _role(rel)
                problems.append(f"{role} file {folder / rel} is not covered by the signature (added after the report "
                                "was signed): rerun `trustfm report` to sign it, or remove it")
                checks.append(FileCheck(role=role, path=str(folder / rel), expected_sha256=None,
                                        actual_sha256=None, status="added", relative=rel))
    else:
        problems.append("the report signs the model and results only (a report from an older trustfm): files added "
                        "to the run folder since cannot be told apart; rerun `trustfm report`")
    if check_data:
        checks += _check_data(folder, provenance.get("data_sha256", {}), problems)
    _check_model_card(folder, report, problems)
    return checks


def verify_report(path: str | Path, *, public_key: Path | None = None, check_data: bool = True) -> VerifyResult:
    """Check the signature over every number of the report and over the page, then re-hash the files it names.

    In its run folder, every file the signature covers is hashed again and every file it does not cover is
    reported (see :data:`trustfm.runs.UNSIGNED_RUN_FILES` for the ones left out on purpose). Outside its run
    folder the signature, the page and the embedded numbers are still checked; the file checks that need the
    run folder are listed in ``not_checked``. ``check_data=False`` leaves the data files out (a serving machine
    need not hold them; an image set is decoded again to be checked).
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization

    path = Path(path)
    report, folder, html = _read_report(path)
    provenance, signature = report.get("provenance"), report.get("signature")
    problems: list[str] = []
    signature_valid = signer_checked = html_checked = False
    if not provenance or not signature:
        problems.append("the report carries no signed provenance block")
    elif "html_sha256" not in signature:
        problems.append("the signature covers the provenance block only (a report from an older trustfm): its numbers "
                        "are not covered; rerun `trustfm report`")
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
            key.verify(base64.b64decode(signature["value"]), signed_payload(report, signature["html_sha256"]))
            signature_valid = True
        except InvalidSignature:
            problems.append("the report's numbers or provenance were changed after signing")
        if html is None:
            problems.append("report.html is not beside report.json: the page cannot be checked")
        elif _html_hash(html, signature) != signature["html_sha256"]:
            problems.append("report.html was changed after signing: the page differs from the one signed")
        else:
            html_checked = True
    files: list[FileCheck] = []
    not_checked: list[str] = []
    in_run_folder = (folder / "run.json").is_file()
    if provenance and in_run_folder:
        files = _run_folder_checks(folder, report, provenance, problems, check_data=check_data)
        if not check_data:
            not_checked = ["data files against their signed hashes (not asked for)"]
    elif provenance:
        not_checked = ["the run folder's files against their signed hashes, and files added since (needs the run "
                       "folder)", "data files against their signed hashes (needs the run folder)"]
    return VerifyResult(report=str(path), signature_valid=signature_valid, signer_checked=signer_checked,
                        html_checked=html_checked, files=files, not_checked=not_checked, passed=not problems,
                        problems=problems)
