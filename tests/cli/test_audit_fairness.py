"""The fairness workflow from the CLI: train, audit, mitigate, compare, report — on the tiny model."""

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import run_cli

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}
CHROMIUM = shutil.which("chromium")


def run(*args):
    result = run_cli([str(a) for a in args], capture_output=True, text=True, env=ENV)
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tiny_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("fair")
    common = ["--data", tiny_data, "--model", tiny_model_dir, "--group-column", "group", "--epochs", "2",
              "--learning-rate", "3e-3", "--batch-size", "16", "--max-length", "32", "--quiet",
              "--set", "evaluate.bootstrap_samples=200", "--set", "fairness.sensitive=[group]"]
    run("train", *common, "-o", root / "base")
    run("train", *common, "--set", "fairness.mitigation=reweigh", "-o", root / "reweigh")
    return root / "base", root / "reweigh"


def test_group_audit_representation_counterfactual_and_threshold_optimizer(runs):
    base, _ = runs
    out = json.loads(run("audit", "fairness", base, "--postprocess", "threshold_optimizer", "--format", "json").stdout)
    assert set(out) == {"fairness", "representation", "fairness-threshold_optimizer", "counterfactual"}
    groups = {g["group"]: g for g in out["fairness"]["slices"][0]["groups"]}
    assert set(groups) == {"a", "b"} and sum(g["n"] for g in groups.values()) == 40
    assert all(g["metrics"]["accuracy"]["low"] is not None for g in groups.values())
    assert out["representation"]["columns"]["group"][0]["n"] > 100
    to = out["fairness-threshold_optimizer"]
    assert to["accuracy_before"]["value"] > 0.5 and to["rows"]
    assert (base / "results" / "fairness.json").exists()


def test_reweighed_run_compares_against_its_baseline(runs):
    base, reweigh = runs
    run("audit", "fairness", base)
    out = json.loads(run("audit", "fairness", reweigh, "--compare", base, "--format", "json").stdout)
    comparison = out["fairness-comparison"]
    assert comparison["name"] == "reweigh vs baseline"
    assert comparison["accuracy_before"]["value"] == json.loads((base / "results" / "performance.json").read_text())["accuracy"]["value"]
    assert {r["metric"] for r in comparison["rows"]} >= {"demographic_parity_difference", "equalized_odds_difference"}
    info = json.loads((reweigh / "run.json").read_text())
    assert info["fairness_mitigation"] == "reweigh"


def test_probe_audit_and_fairness_section_in_the_report(runs):
    base, _ = runs
    out = json.loads(run("audit", "fairness", base, "--probe", "eec-style", "--positive-label", "pos",
                         "--postprocess", "threshold_optimizer", "--format", "json").stdout)
    probe = out["fairness-eec-style"]
    assert [s["name"] for s in probe["slices"]] == ["gender", "race", "emotion"]
    assert [s["protected"] for s in probe["slices"]] == [True, True, False]
    post = out["fairness-eec-style-threshold_optimizer"]
    assert post["worst_gap_slice"] == "gender" and "held-out half (7400 texts)" in post["audit_set"]
    assert post["accuracy_before"]["low"] is not None
    assert probe["positive_label"] == "positive" and probe["n"] == 14800
    html_path = Path(json.loads(run("report", base, "--format", "json").stdout)["html"])
    html = html_path.read_text()
    assert 'id="fairness"' in html and "Counterfactual identity-term substitution" in html
    if CHROMIUM is None:
        pytest.skip("Debian chromium is not installed (make test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.goto(html_path.resolve().as_uri())
        section = page.locator("#fairness")
        assert section.is_visible()
        text = section.inner_text()
        dp = probe["slices"][1]["disparities"]["demographic_parity_difference"]
        assert f"{dp['value']:.3f} [{dp['low']:.3f}, {dp['high']:.3f}]" in text  # race gap with its interval
        assert "african_american" in text and "Training-data representation" in text
        assert page.locator("#fairness svg").count() >= 3
        browser.close()


def test_unknown_positive_label_is_a_usage_error(runs):
    base, _ = runs
    result = run_cli(["audit", "fairness", str(base), "--positive-label", "nope"],
                            capture_output=True, text=True, env=ENV)
    assert result.returncode == 2 and "nope" in result.stderr and "Traceback" not in result.stderr


EMOTIONS = {"anger": ["furious", "rage", "hate"], "joy": ["delighted", "happy", "glad"],
            "optimism": ["hopeful", "soon", "better"], "sadness": ["sad", "miss", "cry"]}


@pytest.fixture(scope="module")
def four_class_run(tiny_model_dir, tmp_path_factory):
    """A tiny four-class emotion run (no group column, no declared task)."""
    import random

    from conftest import write_csv

    rng = random.Random(1)
    rows = []
    for i in range(320):
        label = list(EMOTIONS)[i % 4]
        who = rng.choice(["my sister", "my brother", "the muslim neighbour", "the christian neighbour", "he", "she"])
        rows.append({"text": f"{who} felt {rng.choice(EMOTIONS[label])} about the {rng.choice(['game', 'news'])}",
                     "label": label})
    root = tmp_path_factory.mktemp("emotion")
    data = write_csv(root / "emotion.csv", rows)
    run("train", "--data", data, "--model", tiny_model_dir, "--epochs", "1", "--learning-rate", "3e-3",
        "--batch-size", "16", "--max-length", "24", "--quiet", "--set", "evaluate.bootstrap_samples=50",
        "--set", "fairness.min_group_size=5", "-o", root / "run")
    return root / "run"


def test_a_four_class_run_is_audited_one_vs_rest_and_a_sentiment_probe_needs_an_explicit_task(four_class_run):
    out = json.loads(run("audit", "fairness", four_class_run, "--format", "json").stdout)
    fairness, counterfactual = out["fairness"], out["counterfactual"]
    assert fairness["positive_label"] is None and counterfactual["positive_label"] is None
    disparities = fairness["slices"][0]["disparities"]
    assert {f"demographic_parity_difference.{c}" for c in EMOTIONS} <= set(disparities)
    assert "selection_rate" not in fairness["slices"][0]["groups"][0]["metrics"]
    refused = run_cli(["audit", "fairness", str(four_class_run), "--probe", "eec-style", "--positive-label",
                       "sadness"], env=ENV)
    assert refused.returncode == 2 and "--assume-task sentiment" in refused.stderr
    assumed = run("audit", "fairness", four_class_run, "--probe", "eec-style", "--positive-label", "joy",
                  "--assume-task", "sentiment", "--format", "json")
    assert json.loads(assumed.stdout)["fairness-eec-style"]["n"] == 14800
