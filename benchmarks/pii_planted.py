"""Precision and recall of trustfm's PII scanner (Presidio) per type, on a planted-PII corpus generated with Faker.

Each generated sentence carries one value of a known type at a known span,
inside filler text; a third of the sentences carry none (to measure false
positives). A detection counts as correct when it overlaps a planted span of
the same type. Prints one JSON line per type and a summary line.

Usage: python benchmarks/pii_planted.py [--n 1500] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import random

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TEMPLATES = {
    "EMAIL_ADDRESS": ("You can reach me at {} if anything changes.", lambda f: f.email()),
    "PHONE_NUMBER": ("Call the office on {} before noon.", lambda f: f.phone_number()),
    "CREDIT_CARD": ("The refund went to card {} last week.", lambda f: f.credit_card_number()),
    "IBAN_CODE": ("Please wire the deposit to {} today.", lambda f: f.iban()),
    "IP_ADDRESS": ("The login came from {} at night.", lambda f: f.ipv4()),
    "URL": ("The full review is posted at {} now.", lambda f: f.url()),
    "US_SSN": ("My social security number is {} as requested.", lambda f: f.ssn()),
    "DATE_TIME": ("I was born on {} in a small town.", lambda f: f.date_of_birth().strftime(
        random.choice(["%Y-%m-%d", "%B %d, %Y", "%d/%m/%Y", "%m/%d/%Y"]))),
    "PERSON": ("Yesterday {} complained about the delivery.", lambda f: f.name()),
    "LOCATION": ("The parcel was stuck in {} for days.", lambda f: f.city()),
}
FILLER = ["The film was slow but the ending made up for it.", "Service was friendly and quick.",
          "I would not order this again.", "Great value for the price, five stars.",
          "The battery died after two days of use.", "Delivery took longer than promised."]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from faker import Faker

    from trustfm.data.pii import PIIScanner

    random.seed(args.seed)
    Faker.seed(args.seed)
    fake = Faker("en_US")
    texts, planted = [], []
    kinds = list(TEMPLATES)
    for i in range(args.n):
        if i % 3 == 2:
            texts.append(random.choice(FILLER))
            planted.append(None)
            continue
        kind = kinds[i % len(kinds)]
        template, make = TEMPLATES[kind]
        value = make(fake)
        prefix = random.choice(FILLER) + " "
        text = prefix + template.format(value)
        start = len(prefix) + template.index("{}")
        texts.append(text)
        planted.append((kind, start, start + len(value)))
    scanner = PIIScanner()
    found = scanner.scan(texts)
    stats = {k: {"planted": 0, "recalled": 0, "detected": 0, "correct": 0} for k in kinds}
    for plant, findings in zip(planted, found):
        if plant:
            stats[plant[0]]["planted"] += 1
            if any(f.entity == plant[0] and f.start < plant[2] and plant[1] < f.end for f in findings):
                stats[plant[0]]["recalled"] += 1
        for f in findings:
            stats[f.entity]["detected"] += 1
            if plant and f.entity == plant[0] and f.start < plant[2] and plant[1] < f.end:
                stats[f.entity]["correct"] += 1
    for kind, s in stats.items():
        print(json.dumps({"benchmark": "pii_planted", "type": kind, **s,
                          "precision": round(s["correct"] / s["detected"], 4) if s["detected"] else None,
                          "recall": round(s["recalled"] / s["planted"], 4) if s["planted"] else None,
                          "detectable_here": kind not in scanner.not_detected}))
    print(json.dumps({"benchmark": "pii_planted", "sentences": args.n, "with_pii": sum(p is not None for p in planted),
                      "not_detected_types": scanner.not_detected}))


if __name__ == "__main__":
    main()
