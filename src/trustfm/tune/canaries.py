"""Canaries shared by every trial of a search, so that the one-run audit tests the search's own guarantee.

A DP search releases one trial's model, chosen after seeing them all: what it leaks is bounded by the whole
search's epsilon (Papernot & Steinke, :mod:`trustfm.tune.privacy`), not by the chosen trial's. To test that number,
every trial must train on the same canaries with the same inclusion draws: the study draws them once
(``STUDY/canaries``, sealed as in :mod:`trustfm.train.canaries`), and each trial adopts a copy before it trains.
The audit of the released run (``STUDY/selected``) then bounds the search's epsilon from below, and sets the bound
beside it. The weights a gradient canary's direction runs over, and their starting projections, are each trial's
own (its trainable weights may differ); the directions' seeds and the draws are shared.
"""

from __future__ import annotations

import shutil

from trustfm.runs import RunPaths
from trustfm.train.canaries import (FOLDER, PUBLIC_FILE, direction_canaries, draw_input_canaries, new_canary_set,
                                    read_canaries, seal_draws)


def share_study_canaries(plan) -> None:
    """Draw the study's canaries into ``STUDY/canaries`` once (``privacy.audit``; kept as they are on resume)."""
    from trustfm.fileio import exclusive_lock

    if plan.config.privacy.audit is None:
        return
    # processes joining one study draw once: the first holds the lock, the others find its canaries
    with exclusive_lock(plan.study_dir / ".canaries.lock"):
        _draw(plan)


def _draw(plan) -> None:
    from transformers import AutoTokenizer

    from trustfm.data.prepare import prepare_data
    from trustfm.models.loading import resolve_model_dir

    config, study = plan.config, RunPaths(plan.study_dir)
    audit = config.privacy.audit
    if read_canaries(study) is not None:
        return
    canaries = new_canary_set(audit)
    canaries.shared_by = str(plan.study_dir)
    if "input" in audit.kinds:
        labels = prepare_data(config.data, seed=config.seed).label_names
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_dir(config.model.name_or_path), local_files_only=True)
        canaries.input = draw_input_canaries(tokenizer, labels, count=audit.canaries, words=audit.words)
    if "gradient" in audit.kinds:
        canaries.gradient = direction_canaries(audit.canaries)
    study.root.mkdir(parents=True, exist_ok=True)
    seal_draws(study, canaries)


def seed_trial_canaries(plan, number: int) -> None:
    """Give trial ``number`` a copy of the study's canaries (before it trains; nothing without them)."""
    source = plan.study_dir / FOLDER
    if not (source / PUBLIC_FILE).exists():
        return
    target = plan.trial_dir(number) / FOLDER
    if not target.exists():
        shutil.copytree(source, target)
