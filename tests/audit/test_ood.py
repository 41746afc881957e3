"""Out-of-distribution detection: scores, the fitted detector, separation metrics, and the CLI."""

import json
import os

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from trustfm.audit.ood.detectors import MahalanobisDetector, energy_score, max_softmax_score, ood_separation
from conftest import run_cli


def test_scores_by_hand():
    logits = np.array([[2.0, 0.0], [0.0, 0.0]])
    assert max_softmax_score(logits) == pytest.approx([-1 / (1 + np.exp(-2)), -0.5])
    assert energy_score(logits) == pytest.approx([-np.log(np.exp(2) + 1), -np.log(2)])


def test_mahalanobis_separates_shifted_data_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    cov = np.array([[1.0, 0.8], [0.8, 1.0]])
    train = np.concatenate([rng.multivariate_normal([0, 0], cov, 300), rng.multivariate_normal([4, 4], cov, 300)])
    labels = np.repeat([0, 1], 300)
    detector = MahalanobisDetector().fit(train, labels)
    inside = rng.multivariate_normal([4, 4], cov, 200)
    outside = rng.multivariate_normal([2, -2], cov, 200)  # between the classes, against the correlation
    result = ood_separation({"m": detector.score(inside)}, {"m": detector.score(outside)}, bootstrap_samples=50)
    assert result.detectors[0].auroc.value > 0.99
    detector.save(tmp_path, threshold=1.0)
    loaded, meta = MahalanobisDetector.load(tmp_path)
    assert np.allclose(loaded.score(outside), detector.score(outside)) and meta["threshold_at_95_tpr"] == 1.0


def test_separation_metrics_equal_sklearn_and_definition():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, 400), rng.normal(1, 1, 300)
    result = ood_separation({"s": a}, {"s": b}, bootstrap_samples=100)
    d = result.detectors[0]
    assert d.auroc.value == pytest.approx(roc_auc_score(np.r_[np.zeros(400), np.ones(300)], np.r_[a, b]))
    assert d.fpr_at_95_tpr.value == pytest.approx(np.mean(b <= np.quantile(a, 0.95)))
    assert d.auroc.low < d.auroc.value < d.auroc.high


def test_ood_cli_saves_the_detector_and_audit_all_says_why_it_skips(tiny_model_dir, tiny_data, tmp_path):
    env = dict(os.environ)
    run_dir = tmp_path / "run"
    trained = run_cli(["train", "--data", str(tiny_data), "--model", str(tiny_model_dir), "--epochs", "2",
                                    "--learning-rate", "3e-3", "--max-length", "32", "--quiet",
                                    "--set", "evaluate.bootstrap_samples=50", "-o", str(run_dir)],
                             capture_output=True, text=True, env=env)
    assert trained.returncode == 0, trained.stderr
    ood = tmp_path / "ood.csv"
    ood.write_text("sentence\n" + "".join(f"the central bank raised rates by {i} basis points\n" for i in range(60)))
    result = run_cli(["audit", "ood", str(run_dir), "--ood-data", str(ood), "--ood-text-column", "sentence",
                                   "--format", "json"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert [d["detector"] for d in out["detectors"]] == ["max_softmax", "energy", "mahalanobis"]
    assert out["n_out"] == 60 and 0 <= out["detectors"][2]["auroc"]["value"] <= 1
    assert (run_dir / "model" / "ood_detector.safetensors").exists()
    summary = run_cli(["audit", str(run_dir), "--all", "--format", "json"], capture_output=True, text=True, env=env)
    statuses = {a["audit"]: a for a in json.loads(summary.stdout)["audits"]}
    assert statuses["ood"]["status"] == "not applicable" and "--ood-data" in statuses["ood"]["reason"]
    html = (run_dir / "report.html").read_text()
    assert 'id="ood"' in html and "mahalanobis" in html
    metrics = json.loads(run_cli(["gate", str(run_dir), "--list", "--format", "json"],
                                        capture_output=True, text=True, env=env).stdout)
    assert "ood.mahalanobis.auroc" in metrics



def test_a_detector_worse_than_chance_is_flagged_in_result_metrics_and_gate_warnings():
    rng = np.random.default_rng(0)
    inside, outside = rng.normal(1.0, 1.0, 300), rng.normal(0.0, 1.0, 300)  # OOD scores lower: inverted
    result = ood_separation({"inverted": inside, "fine": outside}, {"inverted": outside, "fine": inside},
                            bootstrap_samples=300)
    flags = {d.detector: d.worse_than_chance for d in result.detectors}
    assert flags == {"inverted": True, "fine": False}
    assert result.metrics()["inverted.worse_than_chance"] == 1.0 and result.metrics()["fine.worse_than_chance"] == 0.0
    assert len(result.flags()) == 1 and "inverted is worse than chance" in result.flags()[0]
