"""Adversarial attacks: budgets and stop words are respected, and the reported numbers follow from the model's answers."""

from __future__ import annotations

import numpy as np
import pytest

from trustfm.audit.attacks.recipes import STOPWORDS, _split_words, deepwordbug_attack, hotflip_attack

CUES = {"great": 1, "awful": 0, "excellent": 1, "terrible": 0}


def keyword_model(texts):
    """Three classes (neg, neutral, pos) from exact cue words; an edited cue word no longer counts."""
    out = []
    for t in texts:
        words = t.lower().split()
        logits = 2 * np.array([sum(CUES.get(w) == 0 for w in words), 0.5, sum(CUES.get(w) == 1 for w in words)])
        e = np.exp(logits - logits.max())
        out.append(e / e.sum())
    return np.array(out)


def levenshtein(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


TEXTS = ["the food was great", "an awful and terrible evening", "it is not the best but great staff",
         "excellent", "the plot is great", "awful service"]
LABELS = np.array([2, 0, 2, 2, 0, 0])  # the fifth is misclassified by the keyword model: it is skipped


def test_deepwordbug_flips_cue_words_within_budget_and_skips_wrong_predictions():
    result = deepwordbug_attack(TEXTS, LABELS, keyword_model, ["neg", "neutral", "pos"], bootstrap_samples=100, examples=10)
    assert result.texts == 6 and result.skipped == 1 and result.attacked == 5
    assert result.succeeded == 5  # every cue word can be broken by one character edit
    assert result.success_rate.value == 1.0 and result.robust_accuracy.value == 0.0
    assert result.clean_accuracy == pytest.approx(5 / 6)
    for e in result.examples:
        assert keyword_model([e.adversarial]).argmax() != LABELS[TEXTS.index(e.original)]
        assert levenshtein(e.original, e.adversarial) <= 30
        changed = [(a, b) for a, b in zip(_split_words(e.original)[1::2], _split_words(e.adversarial)[1::2]) if a != b]
        assert changed and all(a.lower() not in STOPWORDS for a, _ in changed)
    # "an awful and terrible evening" needs both cue words broken, in importance order
    two = next(e for e in result.examples if e.original.startswith("an awful"))
    assert two.words_perturbed == 2


def test_edit_budget_is_a_hard_limit():
    result = deepwordbug_attack(["an awful and terrible evening"], np.array([0]), keyword_model, ["neg", "neutral", "pos"],
                                max_edit_distance=1, bootstrap_samples=0, examples=10)
    # one edit of cost 1 breaks one cue word; the second would exceed the budget, so the attack fails
    assert result.succeeded == 0 and result.robust_accuracy.value == 1.0


def test_hotflip_reports_only_flips_that_survive_retokenisation(tiny_model_dir):
    import torch

    from trustfm.config import ModelConfig
    from trustfm.models import build_classifier
    from trustfm.models.inference import predict_proba
    from trustfm.data.batching import encode_texts

    torch.manual_seed(1)
    model, tokenizer = build_classifier(ModelConfig(name_or_path=str(tiny_model_dir)), ["neg", "pos"])
    model.eval()
    texts = ["the staff were friendly and the room was clean", "terrible food and rude waiters everywhere",
             "a quiet pleasant evening with good music", "slow delivery broken item and no refund"]
    pred = predict_proba(model, encode_texts(tokenizer, texts, 32), pad_id=0).argmax(axis=1)
    result = hotflip_attack(texts, pred, model, tokenizer, ["neg", "pos"], max_length=32, max_perturbed_share=0.5,
                            bootstrap_samples=0, examples=10)
    assert result.attacked == 4 and result.skipped == 0
    assert result.succeeded == len(result.examples) <= 4
    for e in result.examples:
        again = predict_proba(model, encode_texts(tokenizer, [e.adversarial], 32), pad_id=0).argmax(axis=1)[0]
        assert again != pred[texts.index(e.original)]
        assert len(e.adversarial.split()) == len(e.original.split())  # whole words swapped for whole words
        assert 1 <= e.words_perturbed <= 4
    assert result.robust_accuracy.value == pytest.approx(1 - result.succeeded / 4)


def test_flips_seen_by_a_search_model_count_only_when_the_model_agrees():
    """A search model that also "flips" whenever the word "food" is gone: the search edits "food" first (it looks
    most important), the real model does not agree, so the search goes on to break "great"."""
    asked = []

    def real(texts):
        asked.extend(texts)
        return keyword_model(texts)

    def liar(texts):
        out = keyword_model(texts)
        for i, t in enumerate(texts):
            words = t.split()  # "was" is a stop word, so it marks every variant of the first text
            if "was" in words and "food" not in words:  # a false flip to neutral, falser still once "great" is gone
                out[i] = [0.05, 0.85, 0.1] if "great" in words else [0.05, 0.9, 0.05]
        return out

    texts = ["the food was great", "awful service"]
    result = deepwordbug_attack(texts, np.array([2, 0]), real, ["neg", "neutral", "pos"],
                                search_predict_proba=liar, bootstrap_samples=0, examples=10)
    assert result.attacked == 2 and result.succeeded == 2
    food = next(e for e in result.examples if e.original == texts[0])
    assert food.words_perturbed == 2 and "food" not in food.adversarial.split()
    assert keyword_model([food.adversarial]).argmax() != 2
    # the real model answered the clean texts, then each flip the search claimed: two for the first text (one
    # false), one for the second; the final texts were judged then and are not asked again
    assert len(asked) == 2 + 3 and asked[:2] == texts
