"""``trustfm audit attack``: DeepWordBug (black-box) and HotFlip (white-box) on a run's test split."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from pydantic import BaseModel

from trustfm.audit.attacks import AttackResult
from trustfm.audit.registry import register_audit


class AttackSuiteResult(BaseModel):
    """Every attack run on the same texts; ``results/attacks.json``."""

    dataset: str
    texts: int
    attacks: list[AttackResult]
    examples_withheld_for_pii: int = 0  # example texts left out because they contain personal data


@register_audit("attacks", "adversarial attacks: DeepWordBug character edits (black-box), HotFlip word swaps (white-box)")
def audit_attacks_run(
    run_dir: str | Path, *, max_texts: int = 200, attacks: Sequence[str] = ("deepwordbug", "hotflip"),
    show_progress: bool = False,
) -> dict[str, object]:
    from trustfm.audit.attacks import ATTACKS, deepwordbug_attack, hotflip_attack
    from trustfm.pipeline import RunModel, sample_test_texts
    from trustfm.runs import write_json_atomic

    unknown = [a for a in attacks if a not in ATTACKS]
    if unknown:
        from trustfm.errors import ConfigError

        raise ConfigError(f"unknown attacks {unknown}; have {sorted(ATTACKS)}")
    runner = RunModel(run_dir)
    config = runner.config
    texts, labels, dataset = sample_test_texts(runner, max_texts)
    common = dict(dataset=dataset, bootstrap_samples=config.evaluate.bootstrap_samples,
                  confidence=config.evaluate.confidence, seed=config.seed)
    results = []
    if "deepwordbug" in attacks:
        results.append(deepwordbug_attack(texts, labels, runner.predict_proba, runner.label_names,
                                          search_predict_proba=runner.fast_predict_proba, **common))
    if "hotflip" in attacks:
        results.append(hotflip_attack(texts, labels, runner.model, runner.tokenizer, runner.label_names,
                                      max_length=config.data.max_length, **common))
    screen = runner.example_screen()
    for result in results:
        result.examples = screen.select(result.examples, lambda e: (e.original, e.adversarial))
    suite = AttackSuiteResult(dataset=dataset, texts=len(texts), attacks=results,
                              examples_withheld_for_pii=screen.withheld)
    write_json_atomic(runner.paths.result("attacks"), suite.model_dump(mode="json"))
    return {"attacks": suite}
