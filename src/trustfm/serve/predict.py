"""Predictions as a user or a service sees them: the predictor wrapped in redaction, ensembles and output rules."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from trustfm.errors import ConfigError


def predict_texts(
    run_dir: str | Path, texts: Sequence[str], *, rules_path: str | Path | None = None,
    members: Sequence[str | Path] = (), show_progress: bool = False,
) -> list[dict]:
    """Predicted label and class probabilities for each text, in input order.

    ``members``: other runs (same labels) whose probabilities are averaged with
    this run's (an ensemble). With ``rules_path`` (an output-rules YAML file),
    ``label`` is the rules' decision (None when a rule abstains), ``model_label``
    the model's own and ``rule`` the rule that decided (None: no rule matched);
    OOD rules use this run's detector.
    """
    from trustfm.audit.ensemble.average import average_proba
    from trustfm.config import load_config
    from trustfm.data.redaction import redact_texts
    from trustfm.models.predictor import Predictor
    from trustfm.runs import existing_run

    config = load_config(existing_run(run_dir).config)
    predictor = Predictor.from_run(run_dir)
    names = predictor.label_names
    texts = redact_texts(texts, config.privacy)  # a model trained on redacted text is served redacted text
    others = [Predictor.from_run(m) for m in members]
    for member, other in zip(members, others):
        if other.label_names != names:
            raise ConfigError(f"ensemble member {member} has labels {other.label_names}, not {names}")
    proba = predictor.predict_proba(texts, show_progress=show_progress)
    truncated = predictor.last_truncated
    if others:
        proba = average_proba([lambda t: proba, *(o.predict_proba for o in others)])(list(texts))
    out = [
        {
            "label": names[int(p.argmax())],
            "confidence": float(p.max()),
            "probabilities": {n: float(v) for n, v in zip(names, p)},
            "truncated": bool(t),
        }
        for p, t in zip(proba, truncated)
    ]
    if rules_path is not None:
        from trustfm.audit.output_rules.rules import apply_rules_with_ood, load_rules

        rules, _ = load_rules(rules_path)
        rules.check_labels(names, str(rules_path))
        ruled = apply_rules_with_ood(rules, predictor, texts, proba)
        for item, label, model_label, rule in zip(out, ruled.labels, ruled.model_labels, ruled.rules):
            item.update(label=label, model_label=model_label, rule=rule)
    return out
