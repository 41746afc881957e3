"""One flat namespace of audit numbers, for policies and dashboards.

Every result file of a run contributes dotted names, for example::

    accuracy                                   (alias of performance.accuracy)
    performance.macro_f1  performance.macro_f1.low
    fairness.group.demographic_parity_difference
    fairness.eec-style.gender.demographic_parity_difference
    fairness.eec-style.gender.female.selection_rate
    counterfactual.gender.flip_rate
    representation.flagged
    explanations.integrated_gradients.comprehensiveness

``.low`` / ``.high`` suffixes give a number's interval bounds where it has one.
Names are derived from the result's shape, so a new audit's results appear
here without editing this module, as long as they use the same building blocks
(intervals, slices, groups).
"""

from __future__ import annotations

import math
from typing import Any

# short aliases a policy may use for the headline numbers
ALIASES = {
    "accuracy": "performance.accuracy",
    "macro_f1": "performance.macro_f1",
    "roc_auc": "performance.roc_auc",
    "expected_calibration_error": "performance.expected_calibration_error",
}
# the probe/slice names users write are shorter than the result file names
_SHORT = {"fairness-eec-style": "fairness.eec-style", "fairness-hatecheck": "fairness.hatecheck",
          "fairness-jigsaw-templates": "fairness.jigsaw-templates"}
_DISPARITY_SHORT = {
    "demographic_parity_difference": "dp_difference",
    "demographic_parity_ratio": "dp_ratio",
    "equalized_odds_difference": "eo_difference",
}


RESULT_KINDS = ("pii", "privacy", "membership", "robustness", "attacks", "output_rules", "ensemble", "ood", "explanations", "audits", "gate", "fairness", "comparison", "counterfactual",
                "representation", "performance", "other")


def result_kind(result: dict) -> str:
    """Which audit result a JSON document is, from its shape (one of ``RESULT_KINDS``).

    The report and the metric namespace both dispatch on this, so a new result
    shape is taught to both in one place.
    """
    if "pii_redaction" in result:
        return "pii"
    if "reference_models" in result and "attacks" in result:
        return "membership"
    if "noise_multiplier" in result and "target_epsilon" in result:
        return "privacy"
    if "tests" in result and "clean_accuracy" in result:
        return "robustness"
    if "attacks" in result and "texts" in result:
        return "attacks"
    if "confidence_curve" in result:
        return "output_rules"
    if "members" in result and "ensemble" in result:
        return "ensemble"
    if "detectors" in result and "best" in result:
        return "ood"
    if "faithfulness" in result or "attributions" in result:
        return "explanations"
    if "audits" in result and "finished" in result:
        return "audits"
    if "outcomes" in result and "policy" in result:
        return "gate"
    if "slices" in result:
        return "fairness"
    if "worst_gap_metric" in result:
        return "comparison"
    if "skipped_axes" in result:
        return "counterfactual"
    if "overall_label_share" in result:
        return "representation"
    if "confusion_matrix" in result:
        return "performance"
    return "other"


def _put(out: dict[str, float], name: str, value: Any) -> None:
    if isinstance(value, bool):
        out[name] = float(value)
    elif isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
        out[name] = float(value)
    elif isinstance(value, dict) and "value" in value and set(value) <= {"value", "low", "high", "confidence"}:
        _put(out, name, value["value"])
        if value.get("low") is not None:
            out[f"{name}.low"] = float(value["low"])
            out[f"{name}.high"] = float(value["high"])


def flatten_results(results: dict[str, dict]) -> dict[str, float]:
    """Dotted metric names -> numbers, from a run's result files (name -> JSON)."""
    out: dict[str, float] = {}
    for file_name, result in results.items():
        prefix = _SHORT.get(file_name, file_name.replace("-", ".", 1) if file_name.startswith("fairness-") else file_name)
        kind = result_kind(result)
        if kind == "fairness":
            for sl in result["slices"]:
                base = f"{prefix}.{sl['name']}"
                for metric, value in sl["disparities"].items():
                    _put(out, f"{base}.{metric}", value)
                    if metric in _DISPARITY_SHORT:
                        _put(out, f"{base}.{_DISPARITY_SHORT[metric]}", value)
                for group in sl["groups"]:
                    for metric, value in group["metrics"].items():
                        _put(out, f"{base}.{group['group']}.{metric}", value)
            continue
        if kind == "counterfactual":
            for axis in result["axes"]:
                _put(out, f"{prefix}.{axis['axis']}.flip_rate", axis["flip_rate"])
                _put(out, f"{prefix}.{axis['axis']}.mean_abs_change", axis["mean_abs_change"])
            continue
        if kind == "explanations":
            if "faithfulness" not in result:  # per-text attributions: no dataset-level numbers
                continue
            for score in result["faithfulness"]["scores"]:
                _put(out, f"{prefix}.{score['method']}.comprehensiveness", score["comprehensiveness"])
                _put(out, f"{prefix}.{score['method']}.sufficiency", score["sufficiency"])
            continue
        if kind == "robustness":
            for test in result["tests"]:
                _put(out, f"{prefix}.{test['name']}.flip_rate", test["flip_rate"])
                if test.get("accuracy"):
                    _put(out, f"{prefix}.{test['name']}.accuracy", test["accuracy"])
            continue
        if kind == "pii":
            for split, found in result["pii_redaction"]["counts"].items():
                _put(out, f"{prefix}.{split}.redacted", sum(found.values()))
            continue
        if kind == "membership":
            for a in result["attacks"]:
                for key in ("auc", "tpr_at_1pct_fpr", "tpr_at_01pct_fpr", "empirical_epsilon_lower_bound"):
                    _put(out, f"{prefix}.{a['attack']}.{key}", a[key])
            continue
        if kind == "attacks":
            for a in result["attacks"]:
                for key in ("success_rate", "robust_accuracy", "mean_queries", "mean_words_perturbed"):
                    _put(out, f"{prefix}.{a['attack']}.{key}", a[key])
            continue
        if kind == "output_rules":
            for key in ("coverage", "accuracy_answered", "accuracy_model"):
                _put(out, f"{prefix}.{key}", result[key])
            continue
        if kind == "ensemble":
            for model in ("single", "ensemble"):
                for key, value in result[model].items():
                    _put(out, f"{prefix}.{model}.{key}", value)
            continue
        if kind == "ood":
            for d in result["detectors"]:
                _put(out, f"{prefix}.{d['detector']}.auroc", d["auroc"])
                _put(out, f"{prefix}.{d['detector']}.fpr_at_95_tpr", d["fpr_at_95_tpr"])
            continue
        if kind == "audits":
            continue
        if kind == "comparison":
            _put(out, f"{prefix}.worst_gap_before", result["worst_gap_before"])
            _put(out, f"{prefix}.worst_gap_after", result["worst_gap_after"])
            continue
        for key, value in result.items():  # flat results (performance, representation, gate, ...)
            if isinstance(value, (dict, int, float, bool)):
                _put(out, f"{prefix}.{key}", value)
    for alias, target in ALIASES.items():
        for suffix in ("", ".low", ".high"):
            if target + suffix in out:
                out[alias + suffix] = out[target + suffix]
    return out
