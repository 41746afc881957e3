"""Word occlusion for the service: black-box, so it explains every model format the service runs."""

from __future__ import annotations

import re


def occlusion_attributions(model, text: str, max_words: int = 64) -> dict:
    """For each of the first ``max_words`` words: the predicted class's probability on ``text`` minus its
    probability with that word removed (positive: the word supports the prediction). One batched call."""
    spans = [m.span() for m in re.finditer(r"\S+", text)][:max_words]
    variants = [text[:start] + text[end:] for start, end in spans]
    answers = model.answer([text, *variants])
    label = answers[0].get("model_label") or answers[0]["label"]
    base = answers[0]["probabilities"].get(label, 0.0)
    return {"label": label, "probability": base, "method": "word occlusion",
            "attributions": [{"word": text[start:end], "score": base - a["probabilities"].get(label, 0.0)}
                             for (start, end), a in zip(spans, answers[1:])]}
