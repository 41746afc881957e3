"""``trustfm explain`` on a dataset, and the registered "explanations" audit.

Writes ``results/explanations.json``: faithfulness of each method (ERASER,
against random), per-class term rankings from the most faithful method, error
slices by length and group, example token highlights and one attention map.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from trustfm.audit.explanations.methods import (
    AttentionMap, ErrorSlice, FaithfulnessResult, GlobalExplanation, TokenAttribution, attention_map, error_slices,
    faithfulness, global_explanation, make_explainer,
)
from trustfm.audit.context import AuditContext, as_context
from trustfm.audit.registry import register_audit
from trustfm.results import Interval, Result, per_item_metrics


class ExplanationReport(Result):
    kind: Literal["explanations"] = "explanations"
    dataset: str
    faithfulness: FaithfulnessResult
    global_view: GlobalExplanation
    error_slices: list[ErrorSlice]
    not_sliced: dict[str, str]
    examples: list[TokenAttribution]
    attention: AttentionMap | None
    examples_withheld_for_pii: int = 0  # example texts left out because they contain personal data

    def metrics(self) -> dict[str, float]:
        """``<method>.comprehensiveness`` and ``<method>.sufficiency`` (ERASER faithfulness)."""
        return per_item_metrics(self.faithfulness.scores, "method", ("comprehensiveness", "sufficiency"))


class ExplanationTexts(Result):
    """``results/explanation-texts.json``: token attributions for texts a user asked about (``explain --text``)."""

    kind: Literal["explanation_texts"] = "explanation_texts"
    attributions: list[TokenAttribution]

    def metrics(self) -> dict[str, float]:
        """None: per-text attributions have no dataset-level numbers."""
        return {}


def perturbation_slices(robustness_file: Path) -> tuple[list, str | None]:
    """Error rate on each perturbation's texts, read from the robustness audit's result; else why there is none.

    The robustness audit measured accuracy on perturbed texts against their
    expected labels; the error rate is its complement, interval included.
    """
    import json

    from trustfm.audit.explanations.methods import ErrorSlice

    if not robustness_file.exists():
        return [], "needs the robustness audit's result: run `trustfm audit robustness RUN_DIR` first"
    tests = json.loads(robustness_file.read_text(encoding="utf-8")).get("tests", [])
    slices = []
    for test in tests:
        accuracy = test.get("accuracy")
        if not accuracy or test.get("n", 0) < 10:
            continue
        low, high = accuracy.get("low"), accuracy.get("high")
        error = Interval(value=1.0 - accuracy["value"], low=None if high is None else 1.0 - high,
                         high=None if low is None else 1.0 - low, confidence=accuracy.get("confidence"))
        slices.append(ErrorSlice(slice="perturbation", value=test["name"], n=int(test["n"]), error_rate=error))
    return slices, None if slices else "the robustness result has no perturbation with an accuracy on 10+ texts"


def _needs_torch_model(ctx: AuditContext, options: dict) -> str | None:
    return ctx.why_not_differentiable("gradient attributions and attention maps need the float torch model",
                                      "explain its torch parent instead")


@register_audit("explanations", "token attributions (IG, occlusion, KernelSHAP) with ERASER faithfulness, global terms, error slices",
                results=(ExplanationReport, ExplanationTexts), why_not_applicable=_needs_torch_model, budget=("faithfulness_texts", "global_texts"))
def explain_run(
    run: str | Path | AuditContext, *, texts: Sequence[str] | None = None, faithfulness_texts: int = 20,
    global_texts: int = 150, examples: int = 5, methods: Sequence[str] = ("integrated_gradients", "occlusion",
                                                                          "kernel_shap", "random"),
    show_progress: bool = False,
) -> dict[str, object]:
    """Explain the run's model on its test split (or on ``texts``) and write ``explanations.json``."""
    ctx = as_context(run, show_progress=show_progress)
    not_applicable = _needs_torch_model(ctx, {})
    if not_applicable:
        from trustfm.errors import ConfigError

        raise ConfigError(f"explanations: not applicable: {not_applicable}")
    runner, config = ctx.predictor, ctx.config
    names = runner.label_names
    max_length = config.data.max_length
    groups: dict[str, list[str]] = {}
    if texts is None:
        part = ctx.eval_part
        texts, y_true, groups = part.texts, ctx.data.label_ids(part), part.groups
        dataset = f"{part.file} ({ctx.eval_split} split)"
    else:
        y_true, dataset = None, "given texts"
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(len(texts))
    sample = [texts[i] for i in order[:faithfulness_texts]]
    settings = {"n_steps": 16, "n_samples": 100}
    faith = faithfulness(runner.model, runner.tokenizer, sample, methods=methods, max_length=max_length,
                         dataset=dataset, seed=config.seed, settings=settings)
    best = make_explainer(faith.most_faithful, runner.model, runner.tokenizer, max_length=max_length,
                          seed=config.seed, **settings)
    proba = runner.predict_proba(texts, show_progress=show_progress)
    predicted = proba.argmax(axis=1)
    chosen = order[:global_texts]
    # the dataset-wide view aggregates occlusion scores: black-box and one batched forward per text,
    # so it scales to hundreds of texts on a CPU; the faithfulness table shows how it compares
    occlusion = make_explainer("occlusion", runner.model, runner.tokenizer, max_length=max_length, seed=config.seed)
    global_view = global_explanation(occlusion, [texts[i] for i in chosen], predicted[chosen], names, dataset=dataset)
    slices, not_sliced = [], {}
    if y_true is not None:
        lengths = np.array([len(runner.tokenizer(t, truncation=True, max_length=max_length)["input_ids"]) for t in texts])
        slices = error_slices(predicted == y_true, lengths, groups, seed=config.seed)
        perturbed, why_not = perturbation_slices(ctx.paths.result("robustness"))
        slices = sorted(slices + perturbed, key=lambda s: -s.error_rate.value)
        if why_not:
            not_sliced["perturbation"] = why_not
        if not groups:
            not_sliced["group"] = "the run's data has no group columns"
    else:
        not_sliced["length"] = not_sliced["group"] = "no labels for the given texts"
    screen = ctx.example_screen()
    example_texts = screen.select([texts[i] for i in order], lambda t: (t,), limit=examples)
    report = ExplanationReport(
        dataset=dataset, faithfulness=faith, global_view=global_view, error_slices=slices, not_sliced=not_sliced,
        examples=[best.explain(t, names) for t in example_texts],
        attention=attention_map(runner.model, runner.tokenizer, example_texts[0], max_length=min(max_length, 48))
        if example_texts else None,
        examples_withheld_for_pii=screen.withheld,
    )
    ctx.save("explanations", report)
    return {"explanations": report}
