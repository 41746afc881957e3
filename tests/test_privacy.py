"""DP-SGD: the accountant's epsilon is Opacus's, sampling is Poisson, the ledger refuses over-budget runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from trustfm.config import load_config
from trustfm.pipeline import train_run
from trustfm.runs import read_json

CLI = [sys.executable, "-m", "trustfm.cli"]


@pytest.fixture
def dp_config(tiny_config, tmp_path):
    return {**tiny_config, "train.epochs": 2, "privacy.dp": {"epsilon": 8.0}, "privacy.ledger": str(tmp_path / "ledger.jsonl")}


def test_dp_run_spends_its_target_epsilon_as_opacus_accounts_it(dp_config):
    from opacus.accountants import RDPAccountant

    paths = train_run(load_config(None, dp_config), show_progress=False)
    privacy = read_json(paths.result("privacy"))
    # 400 rows, 10% validation and 10% test carved out: 320 training rows
    assert privacy["delta"] == 1e-4 and privacy["delta"] < 1 / 320
    assert privacy["sample_rate"] == pytest.approx(1 / 20)
    accountant = RDPAccountant()
    accountant.history = [(privacy["noise_multiplier"], privacy["sample_rate"], 2 * 20)]
    assert privacy["epsilon"] == pytest.approx(accountant.get_epsilon(privacy["delta"]), rel=1e-9)
    assert 7.5 < privacy["epsilon"] <= 8.0 + 1e-6
    epochs = [json.loads(line) for line in (paths.root / "logs" / "metrics.jsonl").read_text().splitlines()
              if '"kind": "epoch"' in line]
    spent = [e["privacy"]["epsilon"] for e in epochs]
    assert len(spent) == 2 and 0 < spent[0] < spent[1] == pytest.approx(privacy["epsilon"])
    entries = [json.loads(line) for line in open(dp_config["privacy.ledger"])]
    assert len(entries) == 1 and entries[0]["epsilon"] == pytest.approx(privacy["epsilon"])
    assert entries[0]["data_sha256"] == privacy["data_sha256"]


def test_poisson_batches_include_each_row_at_the_sample_rate():
    from trustfm.train.privacy import DPSGD

    dp = DPSGD(epsilon=1, delta=1e-5, max_grad_norm=1, n_train=2000, seed=0)
    dp.sample_rate = 1 / 50
    batches = dp.on_epoch_batches(None, 1, [])
    sizes = np.array([len(b) for b in batches])
    assert len(batches) == 50 and sizes.std() > 0  # sizes vary: not fixed-size batches
    assert sizes.mean() == pytest.approx(40, rel=0.15)
    assert dp.on_epoch_batches(None, 1, [])[3].tolist() == batches[3].tolist()  # reproducible per (seed, epoch)


def test_a_run_that_would_exceed_the_dataset_budget_is_refused(dp_config, tmp_path):
    config = {**dp_config, "train.epochs": 1, "privacy.total_epsilon": 10.0, "privacy.dp": {"epsilon": 6.0}}
    train_run(load_config(None, {**config, "output_dir": str(tmp_path / "first")}), show_progress=False)
    args = ["train", "--quiet", "-o", str(tmp_path / "second")]
    for key, value in {**config, "output_dir": None}.items():
        if value is not None and key != "output_dir":
            args += ["--set", f"{key}={json.dumps(value)}"]
    refused = subprocess.run(CLI + args, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert refused.returncode == 2
    message = " ".join(refused.stderr.split())
    assert "privacy budget" in message and "of its total 10" in message and "would spend 6 more" in message
    assert not (tmp_path / "second").exists()


def test_dp_refuses_adversarial_training_and_sets_trainable_parameters(dp_config, tiny_model_dir):
    from trustfm.config import ModelConfig
    from trustfm.errors import ConfigError
    from trustfm.models import build_classifier
    from trustfm.train.privacy import set_trainable

    with pytest.raises(ConfigError, match="adversarial"):
        load_config(None, {**dp_config, "robustness.adversarial_training": {"method": "fgm"}})
    model, _ = build_classifier(ModelConfig(name_or_path=str(tiny_model_dir)), ["a", "b"])
    head = sum(p.numel() for p in model.head.parameters())
    assert set_trainable(model, "head") == head
    layer = sum(p.numel() for p in model.encoder.encoder.layer[-1].parameters())
    assert set_trainable(model, "top_layers", top_layers=1) == head + layer


def test_membership_metrics_agree_with_scikit_learn():
    from sklearn.metrics import roc_auc_score, roc_curve

    from trustfm.audit.membership import auc, empirical_epsilon, tpr_at_fpr

    rng = np.random.default_rng(0)
    members, non_members = rng.normal(0.5, 1, 700), rng.normal(0, 1, 900)
    y = np.r_[np.ones(700), np.zeros(900)]
    scores = np.r_[members, non_members]
    assert auc(members, non_members) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    fpr, tpr, _ = roc_curve(y, scores)
    for target in (0.01, 0.001, 0.1):
        assert tpr_at_fpr(members, non_members, target) == pytest.approx(tpr[fpr <= target].max())
    # no signal: no bound; perfect separation with 250 rows a side: ln(TPR_low / FPR_high) from Clopper-Pearson
    assert empirical_epsilon(rng.normal(size=500), rng.normal(size=500), delta=1e-5)[0] < 0.5
    bound, tpr_at, fpr_at = empirical_epsilon(np.full(500, 2.0), np.zeros(500), delta=1e-5)
    assert (tpr_at, fpr_at) == (1.0, 0.0)
    low = 0.05 ** (1 / 250)  # one-sided 95% Clopper-Pearson: TPR >= low when 250 of 250 hit, FPR <= 1 - low at 0 of 250
    assert bound == pytest.approx(np.log((low - 1e-5) / (1 - low)), rel=1e-6)


def test_overfit_model_leaks_membership_and_dp_model_stays_under_its_epsilon(tiny_config, tmp_path):
    from conftest import make_rows, write_csv
    from trustfm.audit.run_privacy import audit_privacy_run

    rows = make_rows(240, seed=5)
    rng = np.random.default_rng(0)
    for i in rng.choice(240, 70, replace=False):  # noisy labels: memorising them is the only way to fit them
        rows[i]["label"] = "neg" if rows[i]["label"] == "pos" else "pos"
    data = write_csv(tmp_path / "noisy.csv", rows)
    overfit = {**tiny_config, "data.train": str(data), "train.epochs": 12, "train.early_stopping": None,
               "data.split": {"validation": 0.25, "test": 0.25}, "output_dir": str(tmp_path / "overfit")}
    paths = train_run(load_config(None, overfit), show_progress=False)
    result = audit_privacy_run(paths.root, max_rows=120)["membership_inference"]
    attacks = {a.attack: a for a in result.attacks}
    assert result.accounted_epsilon is None
    assert attacks["loss_threshold"].auc.value > 0.65 and attacks["loss_threshold"].auc.low > 0.55
    assert (paths.root / "privacy-audit" / "reference-1042" / "model").exists()

    private = {**overfit, "output_dir": str(tmp_path / "private"), "privacy.dp": {"epsilon": 1.0},
               "privacy.ledger": str(tmp_path / "ledger.jsonl")}
    paths = train_run(load_config(None, private), show_progress=False)
    result = audit_privacy_run(paths.root, max_rows=120)["membership_inference"]
    assert result.accounted_epsilon is not None and result.accounted_epsilon <= 1.0 + 1e-6
    for a in result.attacks:
        assert a.empirical_epsilon_lower_bound <= result.accounted_epsilon
