"""Training-data augmentation: rewritten copies of training rows with the same label.

- Counterfactual: each training text that contains a term of a chosen axis gets
  up to ``variants`` copies with identity terms swapped (Dixon et al., 2018; Zhao
  et al., 2018), so the model sees identity terms in both labels' contexts.
- Perturbation: a share of training texts get one copy with an invariance
  perturbation (typo, homoglyph, ...), so the model learns to ignore them.

Copies keep the source row number (``rows``) and group values, so every
augmented row traces back to the file row it came from.
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
    log.info("counterfactual augmentation: %d copies of %d training rows", len(extra_index), len(part))
    return _with_copies(part, extra_index, extra_text, tag="cf")


def perturbation_augment(
    part: LabelledTexts, *, tests: Sequence[str], share: float = 0.5, seed: int = 0
) -> tuple[LabelledTexts, int]:
    """``part`` plus one perturbed copy for a ``share`` of its rows; returns (augmented rows, copies added)."""
    from trustfm.data.perturbations import INVARIANCE

    unknown = [t for t in tests if t not in INVARIANCE]
    if unknown:
        from trustfm.errors import ConfigError

        raise ConfigError(f"robustness.augmentation.tests: unknown perturbations {unknown}; have {sorted(INVARIANCE)}")
    rng = np.random.default_rng(seed)
    extra_index: list[int] = []
    extra_text: list[str] = []
    for i in np.flatnonzero(rng.random(len(part)) < share):
        text = part.texts[i]
        for j in rng.permutation(len(tests)):  # the first perturbation that applies to this text
            out = INVARIANCE[tests[j]](text, np.random.default_rng([seed, int(i), int(j)]))
            if out is not None and out != text:
                extra_index.append(int(i))
                extra_text.append(out)
                break
    log.info("perturbation augmentation: %d copies of %d training rows", len(extra_index), len(part))
    return _with_copies(part, extra_index, extra_text, tag="pt")


def _with_copies(part: LabelledTexts, index: list[int], texts: list[str], *, tag: str) -> tuple[LabelledTexts, int]:
    """``part`` followed by copies of its rows ``index`` whose texts are replaced by ``texts``."""
    if not index:
        return part, 0
    copies = part.subset(index)
    copies.texts = texts
    merged = LabelledTexts(
        file=part.file,
        texts=part.texts + copies.texts,
        labels=part.labels + copies.labels,
        rows=np.concatenate([part.rows, copies.rows]),
        ids=(part.ids + [f"{x}~{tag}{k}" for k, x in enumerate(copies.ids)]) if part.ids is not None else None,
        groups={c: part.groups[c] + copies.groups[c] for c in part.groups},
        rows_in=part.rows_in,
    )
    return merged, len(index)
