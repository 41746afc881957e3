"""Redaction as a run applies it: every split's texts, before anything else sees them.

``privacy.redact`` in the run config turns it on; the same redaction is applied
again wherever the run's texts are read later (audits, ``predict``), so a model
trained on redacted text is only ever shown redacted text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Sequence

from trustfm.config.schema import PrivacyConfig
from trustfm.results import Result
from trustfm.fileio import write_json_atomic


class RedactionCounts(Result):
    """``results/pii.json``: what a run's redaction replaced, as counts per split and entity type (never values)."""

    kind: Literal["pii"] = "pii"
    mode: str  # mask | placeholder | hash
    counts: dict[str, dict[str, int]]  # split -> entity type -> spans replaced
    not_detected: list[str]  # entity types this installation cannot detect (no NER pipeline)

    def metrics(self) -> dict[str, float]:
        """``<split>.redacted``: spans replaced in that split."""
        return {f"{split}.redacted": float(sum(found.values())) for split, found in self.counts.items()}


def redact_texts(texts: Sequence[str], privacy: PrivacyConfig) -> list[str]:
    """``texts`` with personal data replaced when ``privacy.redact`` is on, else unchanged (a new list)."""
    if not privacy.redact:
        return list(texts)
    from trustfm.data.pii import PIIScanner

    return PIIScanner(mentions=privacy.mentions, hashtags=privacy.hashtags).redact(texts, mode=privacy.redact_mode)


def redact_parts(data, privacy: PrivacyConfig, *, counts_to: Path | None = None):
    """With ``privacy.redact``, personal data in every split's texts replaced (Presidio), in place; returns ``data``.

    ``counts_to``: write what was redacted (counts per split and type, never values) there as JSON.
    """
    if not privacy.redact:
        return data
    from trustfm.data.pii import PIIScanner

    scanner = PIIScanner(mentions=privacy.mentions, hashtags=privacy.hashtags)
    counts: dict[str, dict[str, int]] = {}
    for split, part in data.parts().items():
        part.texts, found = scanner.redact_counted(part.texts, mode=privacy.redact_mode)
        counts[split] = dict(found)
    if counts_to is not None:
        record = RedactionCounts(mode=privacy.redact_mode, counts=counts, not_detected=scanner.not_detected)
        write_json_atomic(counts_to, record.model_dump(mode="json"))
    return data

