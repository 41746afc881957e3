"""Counterfactual data augmentation: training rows copied with identity terms swapped.

Each training text that contains a term of a chosen axis gets up to
``variants`` rewritten copies with the same label (Dixon et al., 2018; Zhao et
al., 2018), so the model sees identity terms in both labels' contexts.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from trustfm.data.identity_terms import IdentityTerms
from trustfm.data.validate import LabelledTexts

log = logging.getLogger("trustfm.data")


def counterfactual_augment(
    part: LabelledTexts, *, axes: Sequence[str], variants: int = 1, seed: int = 0
) -> tuple[LabelledTexts, int]:
    """``part`` plus its counterfactual copies; returns (augmented rows, copies added).

    Copies keep the source row number (``rows``) and group values, so every
    augmented row traces back to the file row it came from.
    """
    terms = IdentityTerms.default()
    unknown = [a for a in axes if a not in terms.axes]
    if unknown:
        from trustfm.errors import ConfigError

        raise ConfigError(f"fairness.counterfactual_axes: unknown axes {unknown}; have {sorted(terms.axes)}")
    rng = np.random.default_rng(seed)
    extra_index: list[int] = []
    extra_text: list[str] = []
    for i, text in enumerate(part.texts):
        for axis in axes:
            options = terms.counterfactuals(text, axis, max_variants=16)
            if not options:
                continue
            for j in rng.permutation(len(options))[:variants]:
                extra_index.append(i)
                extra_text.append(options[j][1])
    if not extra_index:
        return part, 0
    copies = part.subset(extra_index)
    copies.texts = extra_text
    merged = LabelledTexts(
        file=part.file,
        texts=part.texts + copies.texts,
        labels=part.labels + copies.labels,
        rows=np.concatenate([part.rows, copies.rows]),
        ids=(part.ids + [f"{x}~cf{k}" for k, x in enumerate(copies.ids)]) if part.ids is not None else None,
        groups={c: part.groups[c] + copies.groups[c] for c in part.groups},
        rows_in=part.rows_in,
    )
    log.info("counterfactual augmentation: %d copies added to %d training rows", len(extra_index), len(part))
    return merged, len(extra_index)
