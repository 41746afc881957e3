"""Data quality: label issues, duplicates and train/test leakage, each row traced to its file row.

- Label issues: cleanlab's confident learning (Northcutt et al., 2021) over
  out-of-fold predicted probabilities. The probabilities come from a logistic
  regression on the pretrained encoder's mean-pooled embeddings, fitted with
  stratified K-fold, so no row is scored by a model that saw it (cleanlab's
  recommended recipe; a fine-tuned model per fold would cost K fine-tunings).
- Duplicates: exact (identical text), normalised (identical after lower-casing
  and dropping everything but letters and digits) and near (cosine similarity
  of embeddings at or above ``near_threshold``).
- Leakage: test rows whose text is a duplicate (any of the three kinds) of a
  training row.

``clean_plan`` turns the findings into a list of row actions (remove or
relabel) with their reasons; ``trustfm data check --fix`` applies it. These
checks take embeddings from the pretrained encoder, so they live with the
audits (which may use models) rather than in ``trustfm.data``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from pydantic import BaseModel

from trustfm.data.validate import normalise_text as normalise


class LabelIssue(BaseModel):
    row: int  # data row number in the file (1 = first row after the header)
    given: str
    suggested: str
    self_confidence: float  # out-of-fold probability of the given label, in [0, 1]


class DuplicatePair(BaseModel):
    row: int  # the later row
    duplicate_of: int  # the earlier row it repeats
    kind: str  # exact | normalised | near
    similarity: float  # cosine of embeddings (1.0 for exact and normalised)
    same_label: bool | None  # None when comparing with unlabelled rows


class CleaningFindings(BaseModel):
    rows: int
    label_issues: list[LabelIssue]
    duplicates: list[DuplicatePair]
    leakage: list[DuplicatePair]  # row = test row, duplicate_of = training row
    out_of_fold_accuracy: float | None  # accuracy of the out-of-fold probabilities (how trustworthy they are)
    near_threshold: float
    folds: int
    model_rows: int | None = None  # rows the model-based checks (label issues, near duplicates) saw; None: all


class RowAction(BaseModel):
    row: int
    action: str  # removed | relabelled
    reason: str  # label_issue | duplicate | near_duplicate | leakage
    detail: dict[str, str | int | float | bool | None]


def embed(texts: Sequence[str], *, model_name_or_path: str = "default", max_length: int = 128) -> np.ndarray:
    """Mean-pooled pretrained-encoder embeddings, L2-normalised, shape (n, hidden)."""
    from trustfm.config.schema import ModelConfig
    from trustfm.data.batching import encode_texts
    from trustfm.models import build_classifier
    from trustfm.models.inference import predict_logits_and_features
    from trustfm.models.predictor import quiet_transformers

    quiet_transformers()
    model, tokenizer = build_classifier(ModelConfig(name_or_path=model_name_or_path), ["a", "b"])
    encoded = encode_texts(tokenizer, list(texts), max_length)
    _, features = predict_logits_and_features(model, encoded, pad_id=tokenizer.pad_token_id, batch_size=128,
                                              precision="auto")
    features = features.astype(np.float32)
    return features / np.linalg.norm(features, axis=1, keepdims=True).clip(1e-12)


def embed_images(paths: Sequence[str], *, image_config, model_name_or_path: str = "default") -> np.ndarray:
    """Pooled features of the run's pretrained image backbone (the shipped ImageNet EfficientNet, or a vision
    transformer's folder), L2-normalised, shape (n, features)."""
    from trustfm.models.image import build_image_classifier
    from trustfm.models.inference import predict_logits_and_features
    from trustfm.models.inputs import ImageInputs

    model = build_image_classifier(num_labels=2, image_size=image_config.size, pretrained=True, dropout=0.0,
                                   name_or_path=model_name_or_path)
    encoded = ImageInputs(image_config).encode(list(paths))
    _, features = predict_logits_and_features(model, encoded, pad_id=0, batch_size=64)
    return features / np.linalg.norm(features, axis=1, keepdims=True).clip(1e-12)


def pretrained_features(config):
    """``features(inputs) -> (n, d)`` for a run config's inputs: the pretrained encoder's embeddings (for images,
    the ImageNet backbone's), features the run did not learn."""
    from functools import partial

    if config.data.modality == "image":
        return partial(embed_images, image_config=config.data.image, model_name_or_path=config.model.name_or_path)
    return partial(embed, model_name_or_path=config.model.name_or_path, max_length=config.data.max_length)


def out_of_fold_proba(features: np.ndarray, label_ids: np.ndarray, *, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Class probabilities (n, k) for each row from a logistic regression that did not see it (stratified K-fold)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    smallest = int(np.bincount(label_ids).min())
    folds = max(2, min(folds, smallest))
    model = LogisticRegression(max_iter=2000, C=1.0)
    return cross_val_predict(model, features, label_ids, cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
                             method="predict_proba")


def label_issues(label_ids: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """Row positions cleanlab flags as likely mislabelled, most suspicious first (by self-confidence)."""
    from trustfm._deps import optional_import

    find_label_issues = optional_import("cleanlab.filter", "clean").find_label_issues
    return np.asarray(find_label_issues(label_ids, proba, return_indices_ranked_by="self_confidence"), dtype=np.int64)


def _text_duplicates(texts: Sequence[str], seen: dict | None = None) -> list[tuple[int, int, str]]:
    """(later position, earlier position, kind) for exact then normalised duplicates within ``texts``, or of ``seen``."""
    exact: dict[str, int] = {} if seen is None else dict(seen["exact"])
    norm: dict[str, int] = {} if seen is None else dict(seen["normalised"])
    out = []
    for i, text in enumerate(texts):
        key = normalise(text)
        if text in exact:
            out.append((i, exact[text], "exact"))
        elif key and key in norm:
            out.append((i, norm[key], "normalised"))
        if seen is None:
            exact.setdefault(text, i)
            if key:
                norm.setdefault(key, i)
    return out


def _near_pairs(a: np.ndarray, b: np.ndarray, threshold: float, *, same: bool, chunk: int = 1024):
    """(i in a, j in b, cosine) with cosine >= threshold; with ``same`` only j < i (each pair once)."""
    for start in range(0, len(a), chunk):
        sims = a[start:start + chunk] @ b.T
        if same:  # keep j < i only
            rows = np.arange(start, start + len(sims))
            sims[np.arange(b.shape[0])[None, :] >= rows[:, None]] = -1
        hit_i, hit_j = np.nonzero(sims >= threshold)
        for i, j in zip(hit_i, hit_j):
            yield start + int(i), int(j), float(sims[i, j])


def find_issues(
    texts: Sequence[str], labels: Sequence[str], rows: np.ndarray, features: np.ndarray, label_names: Sequence[str], *,
    test_texts: Sequence[str] = (), test_rows: np.ndarray | None = None, test_features: np.ndarray | None = None,
    near_threshold: float = 0.97, folds: int = 5, seed: int = 0, model_positions: np.ndarray | None = None,
) -> CleaningFindings:
    """All findings for one labelled file (``features`` from :func:`embed`, rows' file numbers in ``rows``).

    ``model_positions``: the positions of ``texts`` that ``features`` embed, when
    the model-based checks (label issues, near duplicates, near leakage) run on a
    sample; exact and normalised duplicates and leakage always cover every row.
    """
    index = {n: i for i, n in enumerate(label_names)}
    y_all = np.array([index[x] for x in labels])
    positions = np.arange(len(texts)) if model_positions is None else np.asarray(model_positions, dtype=np.int64)
    y = y_all[positions]
    issues, oof_accuracy = [], None
    if len(set(y.tolist())) >= 2 and int(np.bincount(y).min()) >= 2:
        proba = out_of_fold_proba(features, y, folds=folds, seed=seed)
        oof_accuracy = float((proba.argmax(axis=1) == y).mean())
        for k in label_issues(y, proba):
            i = positions[k]
            issues.append(LabelIssue(row=int(rows[i]), given=labels[i], suggested=label_names[int(proba[k].argmax())],
                                     self_confidence=float(proba[k, y[k]])))
    duplicates, marked = [], set()
    for i, j, kind in _text_duplicates(texts):
        duplicates.append(DuplicatePair(row=int(rows[i]), duplicate_of=int(rows[j]), kind=kind, similarity=1.0,
                                        same_label=labels[i] == labels[j]))
        marked.add(i)
    for k, m, sim in _near_pairs(features, features, near_threshold, same=True):
        i, j = int(positions[k]), int(positions[m])
        if i not in marked:
            duplicates.append(DuplicatePair(row=int(rows[i]), duplicate_of=int(rows[j]), kind="near", similarity=sim,
                                            same_label=labels[i] == labels[j]))
            marked.add(i)
    leakage = []
    if len(test_texts):
        seen = {"exact": {}, "normalised": {}}
        for j, text in enumerate(texts):
            seen["exact"].setdefault(text, j)
            key = normalise(text)
            if key:
                seen["normalised"].setdefault(key, j)
        leaked = set()
        for i, j, kind in _text_duplicates(test_texts, seen):
            leakage.append(DuplicatePair(row=int(test_rows[i]), duplicate_of=int(rows[j]), kind=kind, similarity=1.0,
                                         same_label=None))
            leaked.add(i)
        best: dict[int, tuple[int, float]] = {}
        for i, j, sim in _near_pairs(test_features, features, near_threshold, same=False):
            if i not in leaked and (i not in best or sim > best[i][1]):
                best[i] = (int(positions[j]), sim)
        for i, (j, sim) in sorted(best.items()):
            leakage.append(DuplicatePair(row=int(test_rows[i]), duplicate_of=int(rows[j]), kind="near", similarity=sim,
                                         same_label=None))
    duplicates.sort(key=lambda d: d.row)
    return CleaningFindings(rows=len(texts), label_issues=issues, duplicates=duplicates, leakage=leakage,
                            out_of_fold_accuracy=oof_accuracy, near_threshold=near_threshold, folds=folds,
                            model_rows=None if model_positions is None else len(positions))


def clean_plan(findings: CleaningFindings, *, relabel: bool = False, remove_near: bool = True) -> list[RowAction]:
    """One action per training row to change, in row order; a row gets at most one action.

    Duplicates (the later copy) and training rows that leak into the test set are removed;
    label issues are removed, or relabelled to the suggested label with ``relabel``.
    """
    actions: dict[int, RowAction] = {}
    for leak in findings.leakage:
        actions.setdefault(leak.duplicate_of, RowAction(
            row=leak.duplicate_of, action="removed", reason="leakage",
            detail={"test_row": leak.row, "kind": leak.kind, "similarity": round(leak.similarity, 4)}))
    for d in findings.duplicates:
        if d.kind == "near" and not remove_near:
            continue
        actions.setdefault(d.row, RowAction(
            row=d.row, action="removed", reason="duplicate" if d.kind != "near" else "near_duplicate",
            detail={"duplicate_of": d.duplicate_of, "kind": d.kind, "similarity": round(d.similarity, 4),
                    "same_label": d.same_label}))
    for issue in findings.label_issues:
        actions.setdefault(issue.row, RowAction(
            row=issue.row, action="relabelled" if relabel else "removed", reason="label_issue",
            detail={"given": issue.given, "suggested": issue.suggested,
                    "self_confidence": round(issue.self_confidence, 4)}))
    return [actions[r] for r in sorted(actions)]
