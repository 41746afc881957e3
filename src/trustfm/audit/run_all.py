"""Run every registered audit that applies to a run; record why the others did not run."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from trustfm.errors import TrustfmError
from trustfm.results import Result
from trustfm.fileio import write_json_atomic
from trustfm.runs import now_iso

log = logging.getLogger("trustfm.audit")


class AuditStatus(BaseModel):
    audit: str
    description: str
    status: str  # ran, not applicable, failed
    reason: str | None = None
    results: list[str] = []
    seconds: float | None = None  # wall time of the audit, including what it loaded first into the shared context


class AuditSummary(Result):
    kind: Literal["audits"] = "audits"
    run_dir: str
    finished: str
    audits: list[AuditStatus]
    # a model behind an endpoint: what auditing it cost (requests, texts sent, texts answered from the cache)
    endpoint: dict[str, int] | None = None

    def metrics(self) -> dict[str, float]:
        """None: the summary records which audits ran, not numbers."""
        return {}


def run_all_audits(run_dir: str | Path, *, options: dict[str, dict] | None = None, max_examples: int | None = None,
                   show_progress: bool = False) -> AuditSummary:
    """Each registered audit in registration order, all on one :class:`AuditContext` (the model is loaded
    and the data prepared once); a user error in one does not stop the rest.

    ``options``: keyword options per audit name (e.g. ``{"attacks": {"max_texts": 100}}``). Each audit's
    ``why_not_applicable(ctx, options)`` sees its options, so one that supplies what the audit needs (``ood_data``,
    ``rules``, ``members``) makes it apply. ``max_examples`` bounds every audit's examples (texts, images, rows:
    each audit's declared budget options); ``options`` win over it. One line is logged per finished audit, so a
    long run shows progress when its output goes to a file.
    """
    from trustfm.audit.context import AuditContext
    from trustfm.audit.registry import registered_audits

    ctx = AuditContext(run_dir, show_progress=show_progress)
    paths = ctx.paths
    statuses = []
    for name, spec in registered_audits().items():
        given = {**spec.budget_options(max_examples), **(options or {}).get(name, {})}
        reason = spec.reason_not_applicable(ctx, given)
        if reason:
            statuses.append(AuditStatus(audit=name, description=spec.description, status="not applicable", reason=reason))
            continue
        started = time.perf_counter()
        try:
            written = spec.run(ctx, show_progress=show_progress, **given)
        except TrustfmError as exc:  # the audit could not run on this run: say why, go on
            log.warning("audit %s could not run: %s", name, exc)
            statuses.append(AuditStatus(audit=name, description=spec.description, status="failed", reason=str(exc)))
            continue
        statuses.append(AuditStatus(audit=name, description=spec.description, status="ran", results=sorted(written),
                                    seconds=round(time.perf_counter() - started, 2)))
        log.info("audit %s: ran in %.1f s (%s)", name, statuses[-1].seconds, ", ".join(sorted(written)))
    summary = AuditSummary(run_dir=str(paths.root), finished=now_iso(), audits=statuses,
                           endpoint=ctx.predictor.remote.stats() if ctx.predictor.black_box else None)
    write_json_atomic(paths.result("audits"), summary.model_dump(mode="json"))
    return summary
