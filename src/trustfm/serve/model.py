"""``ServingModel``: a run's model as users and the service see it, loaded once.

It wraps the :class:`~trustfm.models.predictor.Predictor` in what serving adds: the run's
redaction (a model trained on redacted text is served redacted text), an optional ensemble,
output rules (abstain or override, with the rule that decided), the OOD flag from the
detector the OOD audit saved beside the model, and the probability disclosure policy
(full, rounded, or the top label only: less for a model-extraction attacker to learn from).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from trustfm.errors import ConfigError

Disclosure = Literal["full", "rounded", "top1"]


def load_ood_detector(model_dir):
    """(the Mahalanobis detector, its 95%-TPR threshold) saved beside the model by ``audit ood``, or None."""
    from trustfm.audit.ood.detectors import DETECTOR_FILE, MahalanobisDetector

    if not (model_dir / DETECTOR_FILE).is_file():
        return None
    detector, meta = MahalanobisDetector.load(model_dir)
    threshold = meta.get("threshold_at_95_tpr")
    return None if threshold is None else (detector, float(threshold))


def _on_backend(predictor, backend: str):
    """``predictor`` on the backend asked for: a torch model exported to ONNX Runtime under ``onnx`` and ``auto``
    (``auto`` keeps torch, with a warning, where onnxruntime is missing or the export fails its check)."""
    import importlib.util
    import logging

    if backend not in ("auto", "onnx", "torch"):
        raise ConfigError(f"backend must be auto, onnx or torch, not {backend!r}")
    if backend == "torch" or predictor.format != "torch":
        return predictor
    if importlib.util.find_spec("onnxruntime") is None:
        if backend == "onnx":
            raise ConfigError("backend onnx needs onnxruntime: pip install 'trustfm[serve]'")
        return predictor
    try:
        return predictor.onnx_runtime_copy()
    except Exception as exc:  # noqa: BLE001 - auto: an export the exporter or the check refuses serves torch
        if backend == "onnx":
            raise ConfigError(str(exc) if isinstance(exc, ConfigError) else
                              f"the ONNX export failed ({type(exc).__name__}); serve with backend: torch") from None
        logging.getLogger("trustfm.serve").warning("serving on torch: the ONNX export was refused (%s)",
                                                   type(exc).__name__)
        return predictor


class ServingModel:
    """Answers for texts: ``label``, ``confidence``, ``probabilities``, ``truncated``, ``ood`` and, with rules,
    ``model_label`` and ``rule``.

    Parameters: ``run_dir`` (a run folder), ``rules_path`` (an output-rules YAML), ``members`` (other runs with
    the same classes, averaged with this one), ``disclosure`` and ``digits`` (rounding for ``"rounded"``),
    ``batch_size`` and ``pass_cost_tokens`` (the Predictor's forward passes), ``backend`` (``torch``, ``onnx`` or
    ``auto``: see :class:`~trustfm.serve.settings.ServeSettings`; :attr:`backend` says what answers).
    """

    def __init__(self, run_dir: str | Path, *, rules_path: str | Path | None = None, members: Sequence[str | Path] = (),
                 disclosure: Disclosure = "full", digits: int = 2, batch_size: int | None = None,
                 pass_cost_tokens: float | None = None, backend: str = "torch"):
        from trustfm.config import load_config
        from trustfm.models.predictor import Predictor
        from trustfm.runs import existing_run

        self.run_dir = Path(run_dir)
        self.config = load_config(existing_run(run_dir).config)
        options = {"pass_cost_tokens": pass_cost_tokens, "share_cpu": True,
                   **({} if batch_size is None else {"batch_size": batch_size})}
        self.predictor = _on_backend(Predictor.from_run(run_dir, **options), backend)
        self.backend = "onnxruntime" if self.predictor.onnx is not None else "torch"
        self.label_names = self.predictor.label_names
        self.members = [Predictor.from_run(m) for m in members]
        for member, other in zip(members, self.members):
            if other.label_names != self.label_names:
                raise ConfigError(f"ensemble member {member} has labels {other.label_names}, not {self.label_names}")
        self.rules = None
        if rules_path is not None:
            from trustfm.audit.output_rules.rules import load_rules

            self.rules, _ = load_rules(rules_path)
            self.rules.check_labels(self.label_names, str(rules_path))
        self.detector = self._load_detector()
        if disclosure not in ("full", "rounded", "top1"):
            raise ConfigError(f"disclosure must be full, rounded or top1, not {disclosure!r}")
        self.disclosure, self.digits = disclosure, digits

    def _load_detector(self):
        return load_ood_detector(self.predictor.model_dir)

    def _disclose(self, probabilities: np.ndarray) -> dict[str, float]:
        if self.disclosure == "top1":
            top = int(probabilities.argmax())
            return {self.label_names[top]: 1.0}
        if self.disclosure == "rounded":
            return {n: round(float(v), self.digits) for n, v in zip(self.label_names, probabilities)}
        return {n: float(v) for n, v in zip(self.label_names, probabilities)}

    def answer(self, texts: Sequence[str], *, show_progress: bool = False) -> list[dict]:
        """One answer per text, in input order (see the class docstring for the keys)."""
        from trustfm.data.redaction import redact_texts

        texts = redact_texts(list(texts), self.config.privacy)
        if self.detector is not None:
            logits, features = self.predictor.logits_and_embeddings(texts)
            from trustfm.models.onnx_session import softmax

            proba = softmax(logits)
            ood = self.detector[0].score(features) > self.detector[1]
        else:
            proba = self.predictor.predict_proba(texts, show_progress=show_progress)
            ood = None
        truncated = self.predictor.last_truncated
        if self.members:
            from trustfm.audit.ensemble.average import average_proba

            proba = average_proba([lambda t: proba, *(m.predict_proba for m in self.members)])(texts)
        out = [{
            "label": self.label_names[int(p.argmax())],
            "confidence": float(p.max()) if self.disclosure != "rounded" else round(float(p.max()), self.digits),
            "probabilities": self._disclose(p),
            "truncated": bool(t),
            "ood": None if ood is None else bool(o),
            # the request log keeps the model's own numbers whatever the answer discloses (monitoring needs them)
            "logged_probabilities": {n: float(v) for n, v in zip(self.label_names, p)},
        } for p, t, o in zip(proba, truncated, ood if ood is not None else [None] * len(texts))]
        if self.disclosure == "top1":
            for item in out:
                item["confidence"] = None
        if self.rules is not None:
            from trustfm.audit.output_rules.rules import apply_rules_with_ood

            ruled = apply_rules_with_ood(self.rules, self.predictor, texts, proba)
            for item, label, model_label, rule in zip(out, ruled.labels, ruled.model_labels, ruled.rules):
                item.update(label=label, model_label=model_label, rule=rule)
        return out
