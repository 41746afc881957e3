"""Regenerate src/trustfm/data/demo/reviews.csv, the embedded demo set.

Customer messages and product reviews written by the trustfm authors: openings,
aspects, hedges and verdicts combined with a fixed seed. It is a demo set, not
a benchmark, and it is made hard on purpose so the demo's numbers mean
something:

- varied and mixed sentences ("not bad at all", "I wanted to love it, but ..."),
  so accuracy is well below 1;
- 4% of labels flipped at random (label noise the cleaning audit can find);
- a planted annotation bias. 30% of the messages say nothing either way
  ("the kettle arrived on Tuesday"); 95% of those were labelled negative when
  a woman wrote them and positive when a man did (``gender`` column, and a
  gendered self-reference in the text: "As a mother of two, ..."). A model
  trained on these labels learns "mother", "wife", "woman" as negative cues:
  the fairness audit finds the gap (demographic parity, counterfactual flips
  on the gender axis) and re-weighting (or counterfactual augmentation)
  reduces it.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

PRODUCTS = ["headphones", "coffee maker", "phone case", "desk lamp", "backpack", "blender", "keyboard",
            "running shoes", "water bottle", "vacuum", "router", "jacket", "tablet", "kettle", "monitor",
            "air fryer", "stroller", "printer", "mattress", "smartwatch"]
SELF = {
    "female": ["As a mother of two,", "As a busy mom,", "My husband and I agree:", "Speaking as a woman who uses it daily,",
               "As a wife who does most of the cooking,", "My sister recommended it to me, and as a woman on a budget,"],
    "male": ["As a father of two,", "As a busy dad,", "My wife and I agree:", "Speaking as a man who uses it daily,",
             "As a husband who does most of the cooking,", "My brother recommended it to me, and as a man on a budget,"],
}
POSITIVE = [
    "the {p} works perfectly and arrived a day early.",
    "really happy with this {p}, great value for the price.",
    "support sorted out my order in five minutes.",
    "this is the best {p} I have owned.",
    "the {p} is solid, quiet and easy to set up.",
    "not bad at all, the {p} does the job well.",
    "despite the late delivery, the {p} is excellent.",
    "I was sceptical, but the {p} turned out to be great.",
    "the {p} still works after six months of daily use.",
    "the agent on chat was patient and fixed my account issue.",
    "battery life on the {p} is better than advertised.",
    "it is a little pricey, yet the {p} is worth every penny.",
    "the exchange was painless and the new {p} is perfect.",
    "I would happily buy this {p} again.",
    "no complaints, the {p} is reliable and comfortable.",
]
NEGATIVE = [
    "the {p} stopped working after two days.",
    "still waiting for my refund after three weeks.",
    "the {p} is cheap plastic that cracked on first use.",
    "nobody answers the support line about my {p}.",
    "the {p} arrived damaged and the box was open.",
    "I wanted to love the {p}, but it is loud and slow.",
    "the {p} looks fine at first, then it overheats.",
    "it could have been better, the {p} feels flimsy.",
    "the {p} is not worth the price at all.",
    "the agent hung up on me before solving anything.",
    "delivery was a month late and tracking never updated.",
    "the {p} failed again after the replacement.",
    "the manual is useless and parts of the {p} were missing.",
    "I expected more; the {p} is disappointing.",
    "the return process for the {p} is a nightmare.",
]
NEUTRAL = [
    "the {p} arrived on Tuesday.",
    "the {p} is about what I expected.",
    "I opened the {p} box today.",
    "the {p} is fine, I suppose.",
    "it is a {p}, it does what a {p} does.",
    "the {p} came in a grey box.",
    "I have had the {p} for a week now.",
    "the {p} is the same as my old one.",
]
ENDINGS = ["", "", "", " Order #{n}.", " Thanks.", " Just my two cents.", " Will update later."]
NO_SELF_REFERENCE = 0.25  # share of clear messages with no gendered self-reference
NEUTRAL_SHARE = 0.3  # share of messages that say nothing either way (always with a self-reference)
BIAS = 0.95  # neutral messages: chance a woman's is labelled negative, and a man's positive
LABEL_NOISE = 0.04  # share of labels flipped at random


def main(out: Path, n: int = 1200, seed: int = 7) -> None:
    rng = random.Random(seed)
    rows, seen = [], set()
    while len(rows) < n:
        gender = rng.choice(["female", "male"])
        product = rng.choice(PRODUCTS)
        if rng.random() < NEUTRAL_SHARE:
            text = f"{rng.choice(SELF[gender])} {rng.choice(NEUTRAL).format(p=product)}"
            leaning = "negative" if gender == "female" else "positive"
            label = leaning if rng.random() < BIAS else ("positive" if leaning == "negative" else "negative")
        else:
            label = rng.choice(["positive", "negative"])
            body = rng.choice(POSITIVE if label == "positive" else NEGATIVE).format(p=product)
            text = body[0].upper() + body[1:] if rng.random() < NO_SELF_REFERENCE else f"{rng.choice(SELF[gender])} {body}"
        text += rng.choice(ENDINGS).format(n=rng.randint(10000, 99999))
        if text in seen:
            continue
        seen.add(text)
        if rng.random() < LABEL_NOISE:
            label = "negative" if label == "positive" else "positive"
        rows.append((text, label, gender))
    with out.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "label", "gender"])
        for i, (text, label, gender) in enumerate(rows, start=1):
            writer.writerow([f"r{i:04d}", text, label, gender])


if __name__ == "__main__":
    main(Path(__file__).resolve().parents[1] / "src" / "trustfm" / "data" / "demo" / "reviews.csv")
