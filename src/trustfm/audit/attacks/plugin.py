"""``trustfm audit attacks``: DeepWordBug (black-box) and HotFlip (white-box) on a run's test split."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Sequence


from trustfm.audit.attacks.recipes import AttackResult
from trustfm.audit.context import AuditContext, as_context
from trustfm.audit.registry import register_audit
from trustfm.results import Result, per_item_metrics


class AttackSuiteResult(Result):
    """Every attack run on the same texts; ``results/attacks.json``."""

    kind: Literal["attacks"] = "attacks"
    dataset: str
    texts: int
    attacks: list[AttackResult]
    examples_withheld_for_pii: int = 0  # example texts left out because they contain personal data
    skipped: dict[str, str] = {}  # attack -> why it did not run on this model

    def metrics(self) -> dict[str, float]:
        """``<attack>.success_rate``, ``.robust_accuracy``, ``.mean_queries`` and ``.mean_words_perturbed``."""
        return per_item_metrics(self.attacks, "attack",
                                ("success_rate", "robust_accuracy", "mean_queries", "mean_words_perturbed"))


@register_audit("attacks", "adversarial attacks: DeepWordBug character edits (black-box), HotFlip word swaps (white-box)",
                results=(AttackSuiteResult,), budget=("max_texts",))
def audit_attacks_run(
    run: str | Path | AuditContext, *, max_texts: int = 200, attacks: Sequence[str] = ("deepwordbug", "hotflip"),
    show_progress: bool = False,
) -> dict[str, object]:
    from trustfm.audit.attacks.recipes import ATTACKS, deepwordbug_attack, hotflip_attack

    unknown = [a for a in attacks if a not in ATTACKS]
    if unknown:
        from trustfm.errors import ConfigError

        raise ConfigError(f"unknown attacks {unknown}; have {sorted(ATTACKS)}")
    ctx = as_context(run, show_progress=show_progress)
    runner, config = ctx.predictor, ctx.config
    texts, labels, dataset = ctx.sample_eval_texts(max_texts)
    common = dict(dataset=dataset, **ctx.bootstrap.kwargs())
    results, skipped = [], {}
    if "hotflip" in attacks and not runner.differentiable:
        # HotFlip follows the gradient of the embeddings; an ONNX or int8 graph has none to follow
        skipped["hotflip"] = f"white-box: needs gradients, and this run's model is {runner.format}"
        attacks = [a for a in attacks if a != "hotflip"]
    if "deepwordbug" in attacks:
        results.append(deepwordbug_attack(texts, labels, runner.predict_proba, runner.label_names,
                                          search_predict_proba=runner.fast_predict_proba, **common))
    if "hotflip" in attacks:
        results.append(hotflip_attack(texts, labels, runner.model, runner.tokenizer, runner.label_names,
                                      max_length=config.data.max_length, **common))
    screen = ctx.example_screen()
    for result in results:
        result.examples = screen.select(result.examples, lambda e: (e.original, e.adversarial))
    suite = AttackSuiteResult(dataset=dataset, texts=len(texts), attacks=results,
                              examples_withheld_for_pii=screen.withheld, skipped=skipped)
    ctx.save("attacks", suite)
    return {"attacks": suite}
