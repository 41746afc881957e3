"""Build the run report from what the run folder holds: it renders, never recomputes.

``build_report(run_dir)`` writes ``report.json`` (every number, plus the
provenance block) and ``report.html`` (one self-contained file: CSS and SVG
figures inline, nothing fetched when it opens).
"""

from __future__ import annotations

import json
from pathlib import Path

from trustfm.fileio import write_json_atomic, write_text_atomic
from trustfm.runs import existing_run, now_iso, read_json, signed_run_files


def _read_log(path: Path) -> tuple[list[dict], list[dict]]:
    steps, epochs = [], []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            (steps if record.get("kind") == "step" else epochs).append(record)
    return steps, epochs


def collect_report(run_dir: str | Path) -> dict:
    """The report's content as one JSON-ready dict (what report.json holds)."""
    import yaml

    paths = existing_run(run_dir)
    info = read_json(paths.run_info)
    config = yaml.safe_load(paths.config.read_text(encoding="utf-8"))
    results = {p.stem: read_json(p) for p in sorted(paths.results.glob("*.json"))}
    _, epochs = _read_log(paths.metrics_log)
    rejected_counts: dict[str, int] = {}
    if paths.rejected.exists():
        for line in paths.rejected.read_text(encoding="utf-8").splitlines():
            kind = json.loads(line).get("kind", "other")
            rejected_counts[kind] = rejected_counts.get(kind, 0) + 1
    return {
        "run_dir": str(paths.root.resolve()),
        "generated": now_iso(),
        "status": info.get("status"),
        "provenance": {
            "seed": info.get("seed"),
            "started": info.get("started"),
            "finished": info.get("finished"),
            "config": config,
            "data_sha256": info.get("data_hashes", {}),
            "base_model": info.get("base_model", {}),
            "model_sha256": info.get("model_sha256", {}),
            "versions": info.get("versions", {}),
            "compression": info.get("compression"),  # a compressed run: its parent, method and fidelity
            "adjustment": info.get("adjustment"),  # an adjusted run: its parent, temperature, biases, gain
            "imported": info.get("imported"),  # a checkpoint trained elsewhere: where from, and what is unknown
        },
        "data": {
            "label_names": info.get("label_names", []),
            "rows": info.get("rows", {}),
            "truncated": info.get("truncated", {}),
            "rejected_by_kind": rejected_counts,
        },
        "training": {**info.get("training", {}), "epochs": epochs,
                     "weight_averaging": info.get("weight_averaging")},  # train.ema_decay: what was saved
        "results": results,
    }


def highlight_tokens(attribution: dict) -> str:
    """Words (tokens, for results written before words were recorded) as spans shaded by attribution: red pushes
    towards the target class, blue away."""
    from markupsafe import Markup, escape

    words = attribution.get("words")
    units, scores = (words, attribution["word_scores"]) if words else (attribution["tokens"], attribution["scores"])
    peak = max((abs(s) for s in scores), default=0.0) or 1.0
    parts = []
    for token, score in zip(units, scores):
        if not words and token.startswith("[") and token.endswith("]"):
            continue
        alpha = min(abs(score) / peak, 1.0)
        rgb = "192,57,43" if score > 0 else "41,98,255"
        text = token[2:] if not words and token.startswith("##") else " " + token
        parts.append(f'<span class="tok" title="{score:+.4f}" style="background: rgba({rgb},{alpha:.2f})">{escape(text)}</span>')
    return Markup("".join(parts))


# kinds the report's own template renders (those no audit writes, and the headline); every audit renders its
# kinds in its own section, ``section.html.j2`` beside its plugin module
REPORT_KINDS = ("pii", "privacy", "audits", "gate", "performance")
SECTION_FILE = "section.html.j2"
# stages above the audits whose results have a report section of their own, beside the module defining them
STAGE_SECTIONS = {"compress": ("trustfm.compress", ("compression-comparison",)),
                  "serve": ("trustfm.serve", ("extraction",)),
                  "monitor": ("trustfm.monitor", ("monitoring",)),
                  "federate": ("trustfm.federated", ("federated", "federated-poisoning")),
                  "tune": ("trustfm.tune", ("tune",))}


def _section_file(spec):
    """The ``section.html.j2`` in the package of an audit's plugin module (a Traversable; may not exist)."""
    from importlib import resources

    package = spec.run.__module__.rpartition(".")[0]
    return resources.files(package) / SECTION_FILE


def audit_sections() -> tuple[list[str], set[str]]:
    """The registered audits' report sections (template names ``section:<audit>``, in registration order) and the
    kinds they render."""
    from trustfm.audit.registry import registered_audits

    templates, kinds = [], set()
    for name, spec in registered_audits().items():
        if _section_file(spec).is_file():
            templates.append(f"section:{name}")
            kinds |= {model.model_fields["kind"].default for model in spec.results}
    for name, (_, stage_kinds) in STAGE_SECTIONS.items():
        templates.append(f"section:{name}")
        kinds |= set(stage_kinds)
    return templates, kinds


def _load_section(name: str):
    """Jinja loader for ``section:<audit>`` template names."""
    from trustfm.audit.registry import registered_audits

    if not name.startswith("section:"):
        return None
    if name.removeprefix("section:") in STAGE_SECTIONS:
        from importlib import resources

        package = STAGE_SECTIONS[name.removeprefix("section:")][0]
        return (resources.files(package) / SECTION_FILE).read_text(encoding="utf-8")
    spec = registered_audits().get(name.removeprefix("section:"))
    return None if spec is None else _section_file(spec).read_text(encoding="utf-8")


def classify_results(results: dict[str, dict], section_kinds: set[str]) -> dict[str, dict[str, dict]]:
    """Result documents grouped by their ``kind`` (each is validated against its model first); kinds that neither
    the report nor an audit section (``section_kinds``) renders are grouped under ``other`` and shown as JSON."""
    from trustfm.report.namespace import parse_results

    rendered = {*REPORT_KINDS, *section_kinds}
    kinds: dict[str, dict[str, dict]] = {kind: {} for kind in (*rendered, "other")}
    for name, typed in parse_results(results).items():
        kinds[typed.kind if typed.kind in rendered else "other"][name] = results[name]
    return kinds


def build_report(run_dir: str | Path, *, signing_key: Path | None = None) -> tuple[Path, Path]:
    """Write report.json and report.html into the run folder; return their paths.

    The provenance block is signed (see :mod:`trustfm.report.provenance`); the
    HTML embeds the signed JSON so either file can be verified.
    """
    from jinja2 import ChoiceLoader, Environment, FunctionLoader, PackageLoader, select_autoescape

    from trustfm.report import plots

    from trustfm.report.model_card import build_model_card, render_markdown
    from trustfm.data.prepare import file_sha256
    from trustfm.report.provenance import seal, signature_block

    paths = existing_run(run_dir)
    content = collect_report(run_dir)
    content["model_card"] = build_model_card(content)
    # the signature covers every number shown (report.json without its signature block), the page itself, and
    # every file of the run folder but the few that change after release (trustfm.runs.UNSIGNED_RUN_FILES):
    # what the service loads later (an OOD detector, the gate's verdict) is as signed, or refused
    content["run_files_sha256"] = {rel: file_sha256(paths.root / rel) for rel in signed_run_files(paths.root)}
    content["signature"], private_key = signature_block(signing_key)
    steps, epochs = _read_log(paths.metrics_log)
    figures: dict[str, str | None] = {"training": plots.training_curves(steps, epochs)}
    performance = content["results"].get("performance")
    if performance:
        figures["confusion"] = plots.confusion_matrix(performance["confusion_matrix"], performance["label_names"])
        figures["reliability"] = plots.reliability_diagram(
            performance["calibration_bins"], performance["expected_calibration_error"]
        )
    section_templates, section_kinds = audit_sections()
    sections = classify_results(content["results"], section_kinds)
    for name, result in sections["fairness"].items():
        for sl in result["slices"]:
            # the selection rate of the positive class; one-vs-rest (no positive class): accuracy per group
            metric, title = (("selection_rate", f"selection rate of '{result['positive_label']}'")
                             if result.get("positive_label") is not None else ("accuracy", "accuracy"))
            figures[f"{name}:{sl['name']}"] = plots.group_intervals(sl["groups"], metric, f"{sl['name']}: {title}")
    for name, result in sections["explanations"].items():
        attention = result.get("attention")
        if attention:
            figures[f"{name}:attention-grid"] = plots.attention_grid(attention["tokens"], attention["weights"])
            figures[f"{name}:attention-last"] = plots.attention_layer_mean(attention["tokens"], attention["weights"])
    for name, result in sections["compression-comparison"].items():
        figures[f"{name}:deltas"] = plots.delta_forest(
            [d for d in result["deltas"] if not d["metric"].endswith("selection_rate")][:40],
            f"what {result['method']} changed")
    for name, result in sections["monitoring"].items():
        if result["windows"]:
            figures[f"{name}:series"] = plots.monitoring_series(result["windows"], result["alerts"])
    for name, result in sections["federated"].items():
        figures[f"{name}:rounds"] = plots.federated_rounds(result["rounds"])
    for name, result in sections["tune"].items():
        chosen = (result.get("chosen") or {}).get("trial")
        figures[f"{name}:history"] = plots.tuning_history(result["trials"], result["objectives"][0], chosen)
        figures[f"{name}:front"] = plots.tuning_front(result["trials"], result["objectives"], result["constraints"],
                                                      result["front"], chosen)
        for metric, shares in result["importances"].items():
            figures[f"{name}:importance:{metric}"] = plots.parameter_importances(shares, metric)
    for name, result in sections["output_rules"].items():
        point = (result["coverage"]["value"], result["accuracy_answered"]["value"])
        figures[f"{name}:coverage"] = plots.coverage_accuracy(result["confidence_curve"], point)
    loader = ChoiceLoader([PackageLoader("trustfm.report", "templates"), FunctionLoader(_load_section)])
    env = Environment(loader=loader, autoescape=select_autoescape(["html", "j2"]))
    env.filters["highlight"] = highlight_tokens
    html = env.get_template("report.html.j2").render(
        report=content,
        performance=performance,
        sections=sections,
        audit_sections=section_templates,
        figures=figures,
        config_yaml=paths.config.read_text(encoding="utf-8"),
        # "</" would end the script element early; JSON allows the escaped form
        report_json=json.dumps(content, sort_keys=True).replace("</", "<\\/"),
    )
    content, html = seal(content, html, private_key)
    write_json_atomic(paths.report_json, content)
    write_text_atomic(paths.root / "model_card.md", render_markdown(content["model_card"]))
    write_text_atomic(paths.report_html, html)
    return paths.report_html, paths.report_json
