"""Predictions as a user sees them from the command line: :class:`~trustfm.serve.model.ServingModel` once."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


def predict_texts(
    run_dir: str | Path, texts: Sequence[str], *, rules_path: str | Path | None = None,
    members: Sequence[str | Path] = (), show_progress: bool = False,
) -> list[dict]:
    """Predicted label and class probabilities for each text, in input order.

    ``members``: other runs (same labels) whose probabilities are averaged with
    this run's (an ensemble). With ``rules_path`` (an output-rules YAML file),
    ``label`` is the rules' decision (None when a rule abstains), ``model_label``
    the model's own and ``rule`` the rule that decided (None: no rule matched);
    OOD rules use this run's detector. ``ood`` is the saved detector's flag (None
    when the run has no OOD detector).
    """
    from trustfm.serve.model import ServingModel

    answers = ServingModel(run_dir, rules_path=rules_path, members=members).answer(texts, show_progress=show_progress)
    for answer in answers:
        del answer["logged_probabilities"]  # the same as probabilities here: full disclosure
    return answers
