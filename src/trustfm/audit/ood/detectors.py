"""Out-of-distribution detection over model outputs: scores, a fitted detector, and how well it separates.

Scores are "higher = more out-of-distribution":

- ``max_softmax``: ``-max_c p(c | x)`` (Hendrycks & Gimpel, 2017);
- ``energy``: ``-T * logsumexp(logits / T)`` (Liu et al., 2020);
- ``mahalanobis``: the smallest Mahalanobis distance of the pooled embedding to
  a class mean, under one shared covariance (Lee et al., 2018), fitted on
  training data with Ledoit–Wolf shrinkage so it is stable with few rows.

:func:`ood_separation` reports AUROC (OOD rows as the positive class) and the
FPR at 95% TPR (the share of OOD rows accepted when 95% of in-distribution rows
are), each with a bootstrap interval.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel

from trustfm.results import Interval
from trustfm.metrics import binary_roc_auc
from trustfm.results import Result, per_item_metrics

DETECTOR_FILE = "ood_detector.safetensors"


def max_softmax_score(logits: np.ndarray) -> np.ndarray:
    """``-max softmax``, shape (n,), in [-1, -1/k]."""
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    return -p.max(axis=1)


def energy_score(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Free energy ``-T logsumexp(logits / T)``, shape (n,)."""
    z = logits / temperature
    m = z.max(axis=1)
    return -temperature * (m + np.log(np.exp(z - m[:, None]).sum(axis=1)))


class MahalanobisDetector:
    """Class-conditional Gaussians with a shared covariance over pooled features (n, d)."""

    def fit(self, features: np.ndarray, labels: np.ndarray) -> "MahalanobisDetector":
        from sklearn.covariance import LedoitWolf

        features = np.asarray(features, dtype=np.float64)
        labels = np.asarray(labels)
        self.classes_ = np.unique(labels)
        self.means_ = np.stack([features[labels == c].mean(axis=0) for c in self.classes_])
        centred = features - self.means_[np.searchsorted(self.classes_, labels)]
        self.precision_ = LedoitWolf().fit(centred).precision_
        return self

    def score(self, features: np.ndarray) -> np.ndarray:
        """Smallest squared Mahalanobis distance to a class mean, shape (n,)."""
        x = np.asarray(features, dtype=np.float64)
        distances = []
        for mean in self.means_:
            d = x - mean
            distances.append(np.einsum("ij,jk,ik->i", d, self.precision_, d))
        return np.min(np.stack(distances, axis=1), axis=1)

    def save(self, folder: str | Path, *, threshold: float | None = None) -> Path:
        """Write the detector next to the model (safetensors, never pickle)."""
        import torch
        from safetensors.torch import save_file

        from trustfm.fileio import atomic_path, write_json_atomic

        folder = Path(folder)
        with atomic_path(folder / DETECTOR_FILE) as tmp:
            save_file({"means": torch.from_numpy(self.means_), "precision": torch.from_numpy(self.precision_)},
                      str(tmp))
        write_json_atomic(folder / "ood_detector.json", {"method": "mahalanobis", "classes": [str(c) for c in self.classes_],
                                                        "threshold_at_95_tpr": threshold})
        return folder / DETECTOR_FILE

    @classmethod
    def load(cls, folder: str | Path) -> tuple["MahalanobisDetector", dict]:
        from safetensors.torch import load_file

        folder = Path(folder)
        tensors = load_file(str(folder / DETECTOR_FILE))
        meta = json.loads((folder / "ood_detector.json").read_text(encoding="utf-8"))
        detector = cls()
        detector.means_ = tensors["means"].numpy()
        detector.precision_ = tensors["precision"].numpy()
        detector.classes_ = np.array(meta["classes"])
        return detector, meta


class DetectorSeparation(BaseModel):
    detector: str
    auroc: Interval  # OOD rows as positives; 0.5 = no separation, 1 = perfect
    fpr_at_95_tpr: Interval  # share of OOD rows accepted when 95% of in-distribution rows are
    threshold_at_95_tpr: float  # the score below which 95% of in-distribution rows fall
    # its AUROC interval lies below 0.5: it ranks in-distribution rows as more unusual than OOD ones (inverted,
    # or keyed to a feature the OOD data lacks); flagged in the report and as a gate warning
    worse_than_chance: bool = False


class OODResult(Result):
    kind: Literal["ood"] = "ood"
    in_distribution: str
    out_of_distribution: str
    n_in: int
    n_out: int
    detectors: list[DetectorSeparation]
    best: str

    def metrics(self) -> dict[str, float]:
        """``<detector>.auroc``, ``<detector>.fpr_at_95_tpr`` and ``<detector>.worse_than_chance`` (1 or 0)."""
        return per_item_metrics(self.detectors, "detector", ("auroc", "fpr_at_95_tpr", "worse_than_chance"))

    def flags(self) -> list[str]:
        return [f"OOD detector {d.detector} is worse than chance: AUROC {d.auroc.value:.3f} (interval "
                f"{d.auroc.low:.3f}–{d.auroc.high:.3f}) below 0.5" for d in self.detectors if d.worse_than_chance]


def _fpr_at_95(in_scores: np.ndarray, out_scores: np.ndarray) -> tuple[float, float]:
    threshold = float(np.quantile(in_scores, 0.95))
    return float(np.mean(out_scores <= threshold)), threshold


def ood_separation(
    scores_in: dict[str, np.ndarray], scores_out: dict[str, np.ndarray], *, in_name: str = "", out_name: str = "",
    bootstrap_samples: int = 1000, confidence: float = 0.95, seed: int = 0,
) -> OODResult:
    """AUROC and FPR@95%TPR per detector; each dict maps a detector name to scores (higher = more OOD)."""
    rng = np.random.default_rng(seed)
    results = []
    for name in scores_in:
        a, b = np.asarray(scores_in[name]), np.asarray(scores_out[name])
        labels = np.concatenate([np.zeros(len(a)), np.ones(len(b))])
        both = np.concatenate([a, b])
        auroc = binary_roc_auc(labels, both)
        fpr, threshold = _fpr_at_95(a, b)
        auc_draws, fpr_draws = [], []
        for _ in range(bootstrap_samples):
            ia, ib = rng.integers(0, len(a), len(a)), rng.integers(0, len(b), len(b))
            auc_draws.append(binary_roc_auc(labels, np.concatenate([a[ia], b[ib]])))
            fpr_draws.append(_fpr_at_95(a[ia], b[ib])[0])

        interval = Interval.from_draws(auroc, auc_draws, confidence)
        results.append(DetectorSeparation(detector=name, auroc=interval,
                                          fpr_at_95_tpr=Interval.from_draws(fpr, fpr_draws, confidence),
                                          threshold_at_95_tpr=threshold,
                                          worse_than_chance=interval.high is not None and interval.high < 0.5))
    best = max(results, key=lambda r: r.auroc.value).detector
    return OODResult(in_distribution=in_name, out_of_distribution=out_name, n_in=len(next(iter(scores_in.values()))),
                     n_out=len(next(iter(scores_out.values()))), detectors=results, best=best)
