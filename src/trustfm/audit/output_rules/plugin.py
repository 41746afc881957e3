"""``trustfm audit output-rules``: coverage and accuracy of an output-rules file on a run's test split."""

from __future__ import annotations

from pathlib import Path

from trustfm.audit.context import AuditContext, as_context
from trustfm.audit.output_rules.effect import OutputRulesResult
from trustfm.audit.registry import register_audit


def _needs_rules(ctx: AuditContext, options: dict) -> str | None:
    if options.get("rules"):
        return None
    return "needs a rules file: run `trustfm audit output-rules RUN_DIR --rules RULES.yaml`"


@register_audit("output_rules", "output rules (abstain / override) measured as coverage vs accuracy", 
                results=(OutputRulesResult,), why_not_applicable=_needs_rules)
def audit_output_rules_run(run: str | Path | AuditContext, *, rules: Path | None = None, show_progress: bool = False) -> dict[str, object]:
    from trustfm.audit.output_rules.effect import output_rules_effect
    from trustfm.errors import ConfigError
    from trustfm.audit.output_rules.rules import apply_rules_with_ood, load_rules

    if rules is None:
        raise ConfigError("give --rules RULES.yaml")
    rule_set, digest = load_rules(rules)
    ctx = as_context(run, show_progress=show_progress)
    runner, data, part = ctx.predictor, ctx.data, ctx.eval_part
    rule_set.check_labels(runner.label_names, str(rules))
    proba = runner.predict_proba(part.texts, show_progress=show_progress)
    ruled = apply_rules_with_ood(rule_set, runner, part.texts, proba)
    result = output_rules_effect(
        data.label_ids(part), proba, ruled, runner.label_names, rule_set, rules_file=str(rules), rules_sha256=digest,
        dataset=f"{part.file} ({len(part)} test texts)", **ctx.bootstrap.kwargs(),
    )
    ctx.save("output_rules", result)
    return {"output_rules": result}
