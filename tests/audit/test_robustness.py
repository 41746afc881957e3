"""Perturbation suite: each perturbation does what it says; the suite's numbers follow from the model's."""

import json
import os

import numpy as np
import pytest

from trustfm.audit.robustness import perturb as P
from trustfm.data import perturbations
from conftest import run_cli

TEXT = "It is a great movie, John said in 2019."


@pytest.mark.parametrize("name,check", [
    ("typo_swap", lambda o: len(o) == len(TEXT) and sorted(o) == sorted(TEXT)),
    ("typo_insert", lambda o: len(o) == len(TEXT) + 1),
    ("typo_delete", lambda o: len(o) == len(TEXT) - 1),
    ("casing_upper", lambda o: o == TEXT.upper()),
    ("punctuation_strip", lambda o: "," not in o and "." not in o),
    ("homoglyph", lambda o: o != TEXT and any(ord(ch) > 1000 for ch in o)),
    ("zero_width", lambda o: "\u200b" in o and o.replace("\u200b", "") == TEXT),
    ("names", lambda o: "John" not in o and o.split(" said")[0].startswith("It is a great movie, ")),
    ("numbers", lambda o: "2019" not in o and any(ch.isdigit() for ch in o)),
    ("negation", lambda o: o == "It is not a great movie, John said in 2019."),
])
def test_each_perturbation(name, check):
    perturb = {**perturbations.INVARIANCE, **perturbations.DIRECTIONAL}[name]
    out = perturb(TEXT, np.random.default_rng(3))
    assert out is not None and check(out), out


def test_negation_removes_an_existing_negation_and_contractions_expand_ptb_style():
    rng = np.random.default_rng(0)
    assert perturbations.negation("the plot is not thin", rng) == "the plot is thin"
    assert perturbations.contractions("the film is n't good", rng) == "the film is not good"
    assert perturbations.negation("no verb here", rng) is None


def test_suite_numbers_follow_from_a_known_model():
    texts = ["a great film", "a dull film", "it is great", "it is dull", "GREAT stuff"]
    labels = np.array([1, 0, 1, 0, 1])

    def predict(batch):  # case-sensitive keyword model: 'great' -> positive, everything else negative
        p = np.array([0.9 if "great" in t else 0.1 for t in batch])
        return np.column_stack([1 - p, p])

    result = P.perturbation_suite(texts, labels, predict, ["neg", "pos"], bootstrap_samples=100)
    tests = {t.name: t for t in result.tests}
    assert result.clean_accuracy == pytest.approx(0.8)  # "GREAT stuff" is missed
    # upper-casing breaks every 'great' the model relied on: 2 of the 4 changed texts flip
    assert tests["casing_upper"].n == 5 and tests["casing_upper"].flip_rate.value == pytest.approx(2 / 5)
    assert tests["whitespace"].flip_rate.value == 0.0
    negation = tests["negation"]  # "it is great" -> "it is not great": this model cannot follow negation
    assert negation.kind == "directional" and negation.n == 2 and negation.flip_rate.value == 0.0
    assert negation.accuracy.value == 0.0


def test_robustness_cli_on_a_trained_run(tiny_model_dir, tiny_data, tmp_path):
    env = dict(os.environ)
    run_dir = tmp_path / "run"
    assert run_cli(["train", "--data", str(tiny_data), "--model", str(tiny_model_dir), "--epochs", "2",
                                 "--learning-rate", "3e-3", "--max-length", "32", "--quiet",
                                 "--set", "evaluate.bootstrap_samples=50", "-o", str(run_dir)], env=env).returncode == 0
    result = run_cli(["audit", "robustness", str(run_dir), "--format", "json"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["texts"] == 40 and {t["name"] for t in out["tests"]} >= {"typo_swap", "casing_upper", "homoglyph"}
    assert all(0 <= t["flip_rate"]["value"] <= 1 for t in out["tests"])

    attack = run_cli(["audit", "attacks", str(run_dir), "--max-texts", "20", "--format", "json"],
                            capture_output=True, text=True, env=env)
    assert attack.returncode == 0, attack.stderr
    attacks = {a["attack"]: a for a in json.loads(attack.stdout)["attacks"]}
    assert set(attacks) == {"deepwordbug", "hotflip"}
    for a in attacks.values():
        assert a["attacked"] + a["skipped"] == 20 and a["succeeded"] <= a["attacked"]
        assert a["robust_accuracy"]["value"] == pytest.approx(
            (round(a["clean_accuracy"] * 20) - a["succeeded"]) / 20)

    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - name: unsure\n    when: {confidence_below: 0.9}\n    then: abstain\n"
                     "  - name: refunds\n    when: {text_matches: refund}\n    then: {label: neg}\n")
    audited = run_cli(["audit", "output-rules", str(run_dir), "--rules", str(rules), "--format", "json"],
                             capture_output=True, text=True, env=env)
    assert audited.returncode == 0, audited.stderr
    effect = json.loads(audited.stdout)
    assert 0 <= effect["coverage"]["value"] <= 1 and [r["name"] for r in effect["rules"]] == ["unsure", "refunds"]
    predicted = run_cli(["predict", str(run_dir), "--rules", str(rules), "--text", "I want a refund now",
                                      "--format", "json"], capture_output=True, text=True, env=env)
    assert predicted.returncode == 0, predicted.stderr
    p = json.loads(predicted.stdout)[0]
    assert p["rule"] in ("unsure", "refunds") and p["label"] in (None, "neg")

    # an ensemble member must share the test split: another seed carves another split unless data.split.seed is fixed
    member = tmp_path / "member"
    base = ["train", "--data", str(tiny_data), "--model", str(tiny_model_dir), "--epochs", "2", "--learning-rate", "3e-3",
            "--max-length", "32", "--quiet", "--seed", "7", "--set", "evaluate.bootstrap_samples=50"]
    assert run_cli(base + ["-o", str(tmp_path / "other-split")], env=env).returncode == 0
    refused = run_cli(["audit", "ensemble", str(run_dir), "--member", str(tmp_path / "other-split")],
                             capture_output=True, text=True, env=env)
    assert refused.returncode == 2 and "data.split.seed" in refused.stderr
    assert run_cli(base + ["--set", "data.split.seed=42", "-o", str(member)], env=env).returncode == 0
    ensembled = run_cli(["audit", "ensemble", str(run_dir), "--member", str(member), "--attack-texts", "10",
                                      "--format", "json"], capture_output=True, text=True, env=env)
    assert ensembled.returncode == 0, ensembled.stderr
    ens = json.loads(ensembled.stdout)
    assert len(ens["members"]) == 2 and 0 <= ens["ensemble"]["expected_calibration_error"] <= 1

    report = run_cli(["report", str(run_dir)], env=env)
    html = (run_dir / "report.html").read_text()
    assert report.returncode == 0 and 'id="robustness"' in html
    assert 'id="attacks"' in html and 'id="output-rules"' in html and 'id="ensemble"' in html
    assert "Robustness" in (run_dir / "model_card.md").read_text() and "flip rate" in (run_dir / "model_card.md").read_text()


def test_the_negation_test_and_a_sentiment_probe_do_not_apply_to_a_hate_speech_run(tiny_config, tmp_path):
    from trustfm.audit.fairness.plugin import audit_fairness_run
    from trustfm.audit.robustness.plugin import audit_robustness_run
    from trustfm.config import load_config
    from trustfm.errors import ConfigError
    from trustfm.pipeline import train_and_evaluate

    hate = {**tiny_config, "task": "hate_speech", "train.epochs": 1, "output_dir": str(tmp_path / "hate")}
    paths = train_and_evaluate(load_config(None, hate), show_progress=False)
    result = audit_robustness_run(paths.root, max_texts=40)["robustness"]
    assert "negation" not in {t.name for t in result.tests}
    assert "assumes sentiment labels" in result.skipped["negation"] and "hate_speech" in result.skipped["negation"]
    with pytest.raises(ConfigError, match="its labels are sentiment .* this run's task is hate_speech"):
        audit_fairness_run(paths.root, probe="eec-style", positive_label="pos")
