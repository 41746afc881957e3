"""Attribution methods: properties that must hold, not just shapes."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from trustfm.audit.explanations.methods import attention_map, error_slices, faithfulness, make_explainer
from conftest import run_cli

CHROMIUM = shutil.which("chromium")


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tiny_data, tmp_path_factory):
    """A tiny model trained to near-perfect accuracy on the cue-word task."""
    from trustfm.config import load_config
    from trustfm.models.predictor import Predictor
    from trustfm.pipeline import train_and_evaluate

    out = tmp_path_factory.mktemp("explain") / "run"
    config = load_config(None, {
        "data.train": str(tiny_data), "data.max_length": 32, "data.group_columns": ["group"],
        "model.name_or_path": str(tiny_model_dir), "train.epochs": 3, "train.learning_rate": 3e-3,
        "evaluate.bootstrap_samples": 100, "output_dir": str(out),
    })
    train_and_evaluate(config, show_progress=False)
    return Predictor.from_run(out)


def test_integrated_gradients_completeness(trained):
    # IG attributions sum to f(x) - f(baseline) (Sundararajan et al., 2017)
    explainer = make_explainer("integrated_gradients", trained.model, trained.tokenizer, max_length=32, n_steps=64)
    text = "the service was really great and fast"
    ids = explainer.encode(text)
    target = int(explainer.proba(ids).argmax())
    scores = explainer._attribute(ids, target)
    baseline = torch.where(explainer.special(ids), ids, torch.full_like(ids, trained.tokenizer.pad_token_id))
    expected = float(explainer.proba(ids)[0, target] - explainer.proba(baseline)[0, target])
    assert scores.sum() == pytest.approx(expected, abs=0.02)


def test_occlusion_equals_masking_each_token(trained):
    explainer = make_explainer("occlusion", trained.model, trained.tokenizer, max_length=32)
    text = "my order was awful and slow"
    ids = explainer.encode(text)
    target = int(explainer.proba(ids).argmax())
    scores = explainer.attribute([text], [target])[0]
    full = float(explainer.proba(ids)[0, target])
    for i in range(1, ids.shape[1] - 1):
        masked = ids.clone()
        masked[0, i] = trained.tokenizer.mask_token_id
        assert scores[i] == pytest.approx(full - float(explainer.proba(masked)[0, target]), abs=1e-5)
    assert scores[0] == 0 and scores[-1] == 0  # special tokens


def test_methods_find_the_cue_word_and_beat_random(trained):
    from conftest import NEGATIVE_WORDS, POSITIVE_WORDS

    cues = set(POSITIVE_WORDS + NEGATIVE_WORDS)
    texts = ["the product was really excellent", "my delivery and the order was broken",
             "support item was terrible and the", "it was wonderful and the service"]
    for method in ("integrated_gradients", "occlusion", "kernel_shap"):
        explainer = make_explainer(method, trained.model, trained.tokenizer, max_length=32, n_samples=150)
        hits = 0
        for text in texts:
            attribution = explainer.explain(text, trained.label_names)
            best = attribution.tokens[int(np.argmax(attribution.scores))]
            hits += best in cues
        assert hits >= 3, method
    result = faithfulness(trained.model, trained.tokenizer, texts, max_length=32, settings={"n_samples": 100})
    scores = {s.method: s for s in result.scores}
    assert scores["occlusion"].comprehensiveness > scores["random"].comprehensiveness
    assert result.most_faithful != "random"


def test_attention_map_is_a_distribution_per_row_and_sdpa_is_restored(trained):
    before = trained.model.encoder.config._attn_implementation
    view = attention_map(trained.model, trained.tokenizer, "great service")
    weights = np.asarray(view.weights)
    assert weights.shape == (2, 2, len(view.tokens), len(view.tokens))
    assert np.allclose(weights.sum(axis=-1), 1.0, atol=1e-3)
    assert trained.model.encoder.config._attn_implementation == before


def test_error_slices_match_direct_counts():
    correct = np.array([True] * 30 + [False] * 10 + [True] * 20)
    lengths = np.arange(60)
    groups = {"g": ["a"] * 40 + ["b"] * 20}
    slices = {(s.slice, s.value): s for s in error_slices(correct, lengths, groups)}
    assert slices[("g", "a")].error_rate.value == pytest.approx(10 / 40)
    assert slices[("g", "b")].error_rate.value == 0.0
    assert slices[("g", "a")].error_rate.low < 0.25 < slices[("g", "a")].error_rate.high
    assert sum(s.n for (kind, _), s in slices.items() if kind.startswith("length")) == 60


def test_audit_all_gate_and_report_show_everything_in_chromium(trained, tmp_path):
    run_dir = trained.model_dir.parent
    env = dict(os.environ)
    done = run_cli(["audit", str(run_dir), "--all", "--format", "json"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary == json.loads((run_dir / "results" / "audits.json").read_text())  # --format json is the result
    statuses = {a["audit"]: a["status"] for a in summary["audits"]}
    assert statuses == {"performance": "ran", "fairness": "ran", "explanations": "ran", "robustness": "ran",
                        "attacks": "ran", "ood": "not applicable", "output_rules": "not applicable",
                        "ensemble": "not applicable", "membership": "ran", "data_quality": "ran",
                        # image audits, not applicable to a text run
                        "corruption": "not applicable", "adversarial": "not applicable",
                        "attributions": "not applicable",
                        # no canaries were trained on
                        "privacy_canaries": "not applicable"}
    policy = tmp_path / "policy.yaml"
    policy.write_text("name: release\nrules:\n  - accuracy >= 0.5\n  - fairness.group.dp_difference <= 1.0\n")
    assert run_cli(["gate", str(run_dir), "--policy", str(policy)], env=env).returncode == 0
    explained = run_cli(["explain", str(run_dir), "--text", "the service was great", "--format", "json"],
                               capture_output=True, text=True, env=env)
    assert explained.returncode == 0
    assert json.loads(explained.stdout) == json.loads((run_dir / "results" / "explanation-texts.json").read_text())
    assert json.loads(explained.stdout)["attributions"][0]["method"] == "integrated_gradients"
    piped = run_cli(["explain", str(run_dir), "--text", "the service was great"], env=env)  # stdout is not a tty
    assert piped.returncode == 0 and "great (" in piped.stdout and "service (" in piped.stdout
    assert run_cli(["report", str(run_dir)], env=env).returncode == 0
    card = (run_dir / "model_card.md").read_text()
    for heading in ("Intended use", "Out-of-scope use", "Training data and provenance", "Metrics", "Per-group results",
                    "Privacy guarantees", "Robustness", "Limitations", "Ethical considerations"):
        assert f"## {heading}" in card
    if CHROMIUM is None:
        pytest.skip("Debian chromium is not installed (make test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.goto((run_dir / "report.html").resolve().as_uri())
        assert page.locator(".explanations .tok").first.is_visible()  # highlighted tokens
        assert page.locator("#attention").is_visible()
        grid = page.locator(".attention-grid svg")
        assert grid.count() == 1 and grid.bounding_box()["width"] > 200
        assert "Intended use" in page.locator("#model-card").inner_text()
        gate = page.locator("#gate").inner_text()
        assert "PASS" in gate and "accuracy >= 0.5" in gate
        assert "explanations" in page.locator("#audits").inner_text()
        browser.close()


@pytest.mark.parametrize("family", ["bert", "roberta", "deberta-v2", "gpt2"])
def test_explanations_read_in_words_for_every_kind_of_tokenizer(family, tmp_path):
    """WordPiece, byte-level BPE (an encoder's and a decoder's) and SentencePiece Unigram: words, not pieces."""
    import torch

    from tiny_families import build_tiny_model
    from trustfm.audit.explanations.methods import make_explainer
    from trustfm.models.classifier import TextClassifier
    from trustfm.models.loading import load_encoder

    encoder, tokenizer = load_encoder(build_tiny_model(family, tmp_path / family), allow_pickle=False)
    torch.manual_seed(0)
    model = TextClassifier(encoder, 2).eval()
    text = "the refund was disappointing, truly"
    assert len(tokenizer.tokenize(text)) > 5  # the tokenizer splits the words into pieces
    for method in ("occlusion", "integrated_gradients"):
        attribution = make_explainer(method, model, tokenizer, max_length=32).explain(text, ["neg", "pos"])
        assert attribution.words[:3] == ["the", "refund", "was"], (family, attribution.words)
        assert "truly" in attribution.words and len(attribution.word_scores) == len(attribution.words)
        # a word's score is its pieces' summed score
        assert sum(attribution.word_scores) == pytest.approx(sum(attribution.scores), abs=1e-6)
