"""Regenerate src/trustfm/data/demo/reviews.csv, the embedded demo set.

The sentences are written by the trustfm authors: hand-written openings,
aspects and verdicts for customer-service messages and product reviews,
combined with a fixed seed. It is a demo set, not a benchmark.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

PRODUCTS = ["headphones", "coffee maker", "phone case", "desk lamp", "backpack", "blender", "keyboard",
            "running shoes", "water bottle", "vacuum", "router", "jacket", "tablet", "kettle", "monitor"]
POSITIVE = [
    "The {p} works perfectly and arrived a day early.",
    "Really happy with this {p}, great value for the price.",
    "Support sorted out my order in five minutes, thank you!",
    "Best {p} I have owned, would buy again.",
    "The {p} is solid, quiet and easy to set up.",
    "Quick refund and a friendly agent, excellent service.",
    "Love the design of the {p}; it feels premium.",
    "My {p} still works great after six months of daily use.",
    "The agent on chat was patient and fixed my account issue.",
    "Delivery was fast and the {p} was well packed.",
    "Battery life on the {p} is better than advertised.",
    "Five stars, the {p} does exactly what it promises.",
    "Returned a size and the exchange was painless.",
    "Great {p}, my whole family uses it now.",
    "Thanks for replacing the broken part so quickly.",
    "The instructions were clear and the {p} took minutes to assemble.",
    "Impressed by the build quality of this {p}.",
    "Customer service called me back as promised, much appreciated.",
    "Comfortable, reliable and cheaper than the big brands.",
    "I was sceptical but the {p} turned out to be fantastic.",
]
NEGATIVE = [
    "The {p} stopped working after two days.",
    "Still waiting for my refund after three weeks, very disappointed.",
    "Terrible {p}, cheap plastic that cracked on first use.",
    "Nobody answers the support line, I have called five times.",
    "The {p} arrived damaged and the box was open.",
    "Worst purchase this year, the {p} is loud and slow.",
    "Charged twice for one order and no reply to my emails.",
    "The {p} looks nothing like the photos.",
    "Broke within a week, do not buy this {p}.",
    "The agent hung up on me before solving anything.",
    "Delivery was a month late and tracking never updated.",
    "My {p} overheats and smells of burning plastic.",
    "Return process is a nightmare, they keep losing my parcel.",
    "The {p} is flimsy and way overpriced.",
    "Missing parts and the manual is useless.",
    "I was promised a call back that never came.",
    "The {p} failed again after the replacement, awful quality.",
    "Rude staff and an unresolved complaint, I am cancelling.",
    "Poor battery, the {p} dies after an hour.",
    "Ordered the wrong size because the chart is wrong, and returns cost extra.",
]
ENDINGS = ["", "", "", " Order #{n}.", " Recommended.", " Not impressed.", " Thanks.", " Fix this please."]
GROUPS = ["18-34", "35-54", "55+"]


def main(out: Path, n_per_class: int = 150, seed: int = 7) -> None:
    rng = random.Random(seed)
    rows = []
    seen = set()
    for label, templates in (("positive", POSITIVE), ("negative", NEGATIVE)):
        count = 0
        while count < n_per_class:
            text = rng.choice(templates).format(p=rng.choice(PRODUCTS))
            ending = rng.choice(ENDINGS)
            # endings that contradict the label would make labels noisy on purpose; skip them
            if (label == "positive" and ending in (" Not impressed.", " Fix this please.")) or (
                label == "negative" and ending in (" Recommended.", " Thanks.")
            ):
                ending = ""
            text += ending.format(n=rng.randint(10000, 99999))
            if text in seen:
                continue
            seen.add(text)
            rows.append((text, label, rng.choice(GROUPS)))
            count += 1
    rng.shuffle(rows)
    with out.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "label", "group"])
        for i, (text, label, group) in enumerate(rows, start=1):
            writer.writerow([f"r{i:04d}", text, label, group])


if __name__ == "__main__":
    main(Path(__file__).resolve().parents[1] / "src" / "trustfm" / "data" / "demo" / "reviews.csv")
