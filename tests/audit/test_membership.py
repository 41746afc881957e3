"""Membership inference measures memorisation: same-distribution non-members, de-duplicated, documented."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import make_rows, write_csv
from trustfm.config import load_config
from trustfm.pipeline import train_and_evaluate


def test_members_and_non_members_of_one_distribution_without_training_give_an_auc_of_one_half(tiny_model_dir,
                                                                                               tiny_data, tmp_path):
    """No training: nothing is memorised, so the attack's AUC interval must hold 0.5."""
    import pandas as pd

    from trustfm.audit.membership.attacks import cross_entropy, score_attack
    from trustfm.config import ModelConfig
    from trustfm.models import build_classifier, save_classifier
    from trustfm.models.predictor import Predictor

    frame = pd.read_csv(tiny_data)
    model, tokenizer = build_classifier(ModelConfig(name_or_path=str(tiny_model_dir)), ["neg", "pos"])
    predictor = Predictor(save_classifier(model, tokenizer, tmp_path / "untrained", label_names=["neg", "pos"]),
                          max_length=32)
    proba = predictor.predict_proba(frame["text"].tolist())
    y = (frame["label"] == "pos").to_numpy().astype(int)
    order = np.random.default_rng(0).permutation(len(frame))
    members, non_members = order[: len(order) // 2], order[len(order) // 2:]
    score = -cross_entropy(proba, y)
    result = score_attack("loss_threshold", score[members], score[non_members], delta=1e-4, bootstrap_samples=500,
                          confidence=0.95, seed=0)
    assert result.auc.low <= 0.5 <= result.auc.high


def test_non_members_come_from_the_training_file_deduplicated_and_documented(tiny_config, tmp_path):
    from trustfm.audit.membership.plugin import audit_membership_run
    from trustfm.audit.run_all import run_all_audits

    rows = make_rows(300, seed=3)
    for i in range(10):  # ten rows that repeat another row's text: one of each pair may fall out of training
        rows[200 + i]["text"] = rows[i]["text"].upper()
    data = write_csv(tmp_path / "train.csv", rows)
    test_file = write_csv(tmp_path / "other.csv", make_rows(60, seed=9))
    separate = {**tiny_config, "data.train": str(data), "data.validation": str(test_file), "data.test": str(test_file),
                "train.epochs": 1, "output_dir": str(tmp_path / "separate")}
    paths = train_and_evaluate(load_config(None, separate), show_progress=False)
    status = {s.audit: s for s in run_all_audits(paths.root, options={"membership": {"max_rows": 60}},
                                                 show_progress=False).audits}
    assert status["membership"].status == "not applicable"
    assert "data.split.holdout" in status["membership"].reason

    held = {**separate, "data.split.holdout": 0.2, "output_dir": str(tmp_path / "held")}
    paths = train_and_evaluate(load_config(None, held), show_progress=False)
    result = audit_membership_run(paths.root, max_rows=60)["membership"]
    assert "held-out 20%" in result.non_members_from and "data.split.holdout" in result.non_members_from
    assert result.members_from.startswith("the training split")
    assert set(result.non_member_duplicates_removed) == {"exact", "normalised"}
    assert not result.reference_models_kept and result.reference_models_bytes > 0
    assert not (paths.root / "privacy-audit").exists()  # deleted after scoring: no copy of the texts stays
    import json

    counts = json.loads(paths.run_info.read_text())["rows"]
    assert counts["holdout"] > 0
    # the validation file is also the test file: its 60 rows are read (and counted) once per role
    assert counts["read"] - counts["rejected"] == counts["train"] + counts["validation"] + counts["test"] + \
        counts["holdout"]


def test_duplicates_of_training_rows_are_removed_from_non_members():
    from trustfm.audit.membership.plugin import _dedupe

    texts, labels, removed = _dedupe(["A film!", "a film", "new text", "Seen here"], ["p", "p", "n", "n"],
                                     ["a film", "seen here", "other"])
    assert texts == ["new text"] and labels == ["n"]
    assert removed == {"exact": 1, "normalised": 2}
