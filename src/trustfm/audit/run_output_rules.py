"""``trustfm audit rules``: coverage and accuracy of an output-rules file on a run's test split."""

from __future__ import annotations

from pathlib import Path

from trustfm.audit.registry import register_audit


def _needs_rules(run_dir: Path) -> str | None:
    return "needs a rules file: run `trustfm audit rules RUN_DIR --rules RULES.yaml`"


@register_audit("output_rules", "output rules (abstain / override) measured as coverage vs accuracy", applies=_needs_rules)
def audit_output_rules_run(run_dir: str | Path, *, rules: Path | None = None, show_progress: bool = False) -> dict[str, object]:
    from trustfm.audit.output_rules import output_rules_effect
    from trustfm.errors import ConfigError
    from trustfm.pipeline import RunModel, prepare_run_data
    from trustfm.runs import write_json_atomic
    from trustfm.serve.rules import load_rules

    if rules is None:
        raise ConfigError("give --rules RULES.yaml")
    rule_set, digest = load_rules(rules)
    runner = RunModel(run_dir)
    rule_set.check_labels(runner.label_names, str(rules))
    data = prepare_run_data(runner)
    part = data.test if len(data.test) else data.validation
    proba = runner.predict_proba(part.texts, show_progress=show_progress)
    ruled = runner.rule_decisions(part.texts, proba, rule_set)
    config = runner.config
    result = output_rules_effect(
        data.label_ids(part), proba, ruled, runner.label_names, rule_set, rules_file=str(rules), rules_sha256=digest,
        dataset=f"{part.file} ({len(part)} test texts)", bootstrap_samples=config.evaluate.bootstrap_samples,
        confidence=config.evaluate.confidence, seed=config.seed,
    )
    write_json_atomic(runner.paths.result("output_rules"), result.model_dump(mode="json"))
    return {"output_rules": result}
