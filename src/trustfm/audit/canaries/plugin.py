"""``trustfm audit privacy-canaries``: the one-run privacy audit of a run trained with ``privacy.audit.canaries``.

Scores every canary (:mod:`trustfm.audit.canaries.scoring`), fixes the guesses, only then unseals which canaries
were trained on (:func:`trustfm.train.canaries.reveal_inclusion`), and turns the right guesses into an epsilon lower
bound at the stated confidence (:mod:`trustfm.audit.canaries.bound`). Under DP-SGD the bound is set beside the
accountant's epsilon, in a federated run with canary clients (:mod:`trustfm.federated.canaries`) beside the
client-level epsilon, and in the released run of a DP search whose trials shared their canaries
(:mod:`trustfm.tune.canaries`) beside the whole search's epsilon: a bound above it refutes the claim.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trustfm.audit.canaries.scoring import (CanaryAuditResult, client_canary_scores, gradient_canary_scores,
                                            input_canary_scores, judge)
from trustfm.audit.context import AuditContext, as_context
from trustfm.audit.registry import register_audit

NAME = "privacy_canaries"


def _why_not(ctx: AuditContext, options: dict) -> str | None:
    from trustfm.train.canaries import read_canaries

    if read_canaries(ctx.paths) is None:
        return "the run trained without canaries: retrain with privacy.audit.canaries (e.g. 1000)"
    return None


def _search_privacy(ctx: AuditContext) -> dict | None:
    """The whole search's accounting when this run is the released output of a DP search (``tune --select``),
    else None (a trial on its own is judged by its own epsilon)."""
    from trustfm.runs import read_json

    tuning = getattr(ctx.run_info, "tuning", None) or {}
    released = ctx.paths.result("tune")
    if not tuning.get("private_search") or not released.exists():
        return None
    return read_json(released).get("privacy")


def _final_projections(ctx: AuditContext, canaries) -> np.ndarray:
    """The trained weights' projections on the gradient canaries' directions, (count,)."""
    from trustfm.errors import ConfigError
    from trustfm.train.canaries import flat_weights, projections

    model = ctx.predictor.model
    if model is None:
        raise ConfigError(f"{ctx.paths.root}: gradient canaries are read from the weights, and this run's model is "
                          f"{ctx.predictor.format}: audit the run it was made from")
    missing = sorted(set(canaries.gradient_parameters) - dict(model.named_parameters()).keys())
    if missing:
        raise ConfigError(f"{ctx.paths.root}: the model has no weight {missing[0]}, which the gradient canaries "
                          "were drawn over (was the model replaced after training?)")
    return projections(flat_weights(model, canaries.gradient_parameters), canaries.gradient)


@register_audit(NAME, "one-run privacy audit: canaries trained on at random, guessed, then revealed "
                "(Steinke et al. 2023); refutes a DP claim the model does not keep",
                results=(CanaryAuditResult,), why_not_applicable=_why_not)
def audit_privacy_canaries_run(run: str | Path | AuditContext, *, confidence: float = 0.95,
                               show_progress: bool = False) -> dict[str, object]:
    """Audit every kind of canary the run trained with; ``confidence`` of the lower bounds, in (0, 1)."""
    from trustfm.errors import ConfigError
    from trustfm.train.canaries import read_canaries, reveal_inclusion
    from trustfm.train.privacy import default_delta

    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be between 0 and 1, not {confidence}")
    ctx = as_context(run, show_progress=show_progress)
    canaries = read_canaries(ctx.paths)
    if canaries is None:
        raise ConfigError(f"{ctx.paths.root}: {_why_not(ctx, {})}")
    privacy = getattr(ctx.run_info, "privacy", None) or {}
    federated = privacy.get("federated") or {}
    search = _search_privacy(ctx) if canaries.shared_by else None
    if search is not None:  # the released run of a DP search: its guarantee is the whole search's
        delta, delta_source = float(search["delta"]), "the DP search's delta"
        accounted, source = search["epsilon"], "the whole DP search (Papernot & Steinke), which released this run"
    elif "client" in canaries.kinds:  # canary clients test the client-level guarantee
        delta, delta_source = float(federated["client_delta"]), "the run's client-level delta"
        accounted, source = federated["client_epsilon"], "client-level DP of the federated run"
    elif privacy.get("dp"):
        delta, delta_source, accounted = float(privacy["delta"]), "the run's DP-SGD delta", privacy.get("epsilon")
        source = "the run's DP-SGD accountant"
    else:
        n = (ctx.run_info.rows or {}).get("train", 0)
        delta, delta_source, accounted = default_delta(max(n, 1)), "the default delta for its training rows", None
        source = None

    scores: dict[str, tuple[np.ndarray, str]] = {}
    if canaries.input:
        index = {name: i for i, name in enumerate(ctx.predictor.label_names)}
        proba = ctx.predictor.predict_proba([c.text for c in canaries.input])
        labels = np.array([index[c.label] for c in canaries.input])
        scores["input"] = (input_canary_scores(proba, labels), "log-odds of the canary's own random label")
    if canaries.gradient:  # directions: a DP-SGD gradient pushes the weights back, a client's update forward
        initial, final = np.array([c.initial for c in canaries.gradient]), _final_projections(ctx, canaries)
        if "client" in canaries.kinds:
            scores["client"] = (client_canary_scores(initial, final),
                                "how far the global weights moved along the canary client's update")
        else:
            scores["gradient"] = (gradient_canary_scores(initial, final),
                                  "how far the weights moved against the canary's direction")
    # the guesses are fixed by the scores alone (judge() makes them first); only now are the draws unsealed
    included = reveal_inclusion(ctx.paths, canaries)
    audits = [judge(kind, s, included[kind], delta=delta, confidence=confidence, score=what)
              for kind, (s, what) in scores.items()]
    bound = max(a.epsilon_lower_bound for a in audits)
    claim = "none" if accounted is None else ("refuted" if bound > accounted else "stands")
    result = CanaryAuditResult(confidence=confidence, delta=delta, delta_source=delta_source,
                               accounted_epsilon=accounted, accounted_by=source, epsilon_lower_bound=bound, claim=claim, audits=audits)
    ctx.save(NAME, result)
    return {NAME: result}
