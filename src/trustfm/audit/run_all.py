"""Run every registered audit that applies to a run; record why the others did not run."""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import BaseModel

from trustfm.errors import TrustfmError
from trustfm.runs import existing_run, now_iso, write_json_atomic

log = logging.getLogger("trustfm.audit")


class AuditStatus(BaseModel):
    audit: str
    description: str
    status: str  # ran, not applicable, failed
    reason: str | None = None
    results: list[str] = []


class AuditSummary(BaseModel):
    run_dir: str
    finished: str
    audits: list[AuditStatus]


def run_all_audits(run_dir: str | Path, *, show_progress: bool = False) -> AuditSummary:
    """Each registered audit in registration order; a user error in one does not stop the rest."""
    from trustfm.audit.registry import registered_audits

    paths = existing_run(run_dir)
    statuses = []
    for name, spec in registered_audits().items():
        reason = spec.applies(paths.root) if spec.applies else None
        if reason:
            statuses.append(AuditStatus(audit=name, description=spec.description, status="not applicable", reason=reason))
            continue
        try:
            written = spec.run(paths.root, show_progress=show_progress)
        except TrustfmError as exc:  # the audit could not run on this run: say why, go on
            log.warning("audit %s could not run: %s", name, exc)
            statuses.append(AuditStatus(audit=name, description=spec.description, status="failed", reason=str(exc)))
            continue
        statuses.append(AuditStatus(audit=name, description=spec.description, status="ran", results=sorted(written)))
    summary = AuditSummary(run_dir=str(paths.root), finished=now_iso(), audits=statuses)
    write_json_atomic(paths.result("audits"), summary.model_dump(mode="json"))
    return summary
