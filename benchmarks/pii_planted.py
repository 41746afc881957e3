"""Precision and recall of trustfm's PII scanner (Presidio) per type, on a planted-PII corpus generated with Faker.

Each generated sentence carries one value of a known type at a known span, in
one of three templates per type (one with the context words Presidio looks for,
two without), after a filler sentence; a third of the sentences carry none (to measure false
positives). A detection counts as correct when it overlaps a planted span of
the same type; ``redacted_share`` counts a planted value found as any type
(a city the model calls a person is redacted all the same). Prints one JSON line per type and a summary line.

Usage: python benchmarks/pii_planted.py [--n 1500] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import random

os.environ.setdefault("HF_HUB_OFFLINE", "1")

def _date_of_birth(fake) -> str:
    return fake.date_of_birth().strftime(random.choice(["%Y-%m-%d", "%B %d, %Y", "%d/%m/%Y", "%m/%d/%Y", "%d %b %Y"]))


# Three templates per type: the first has the context words Presidio's recognisers look for, the other two do not.
TEMPLATES = {
    "EMAIL_ADDRESS": (["You can reach me at {} if anything changes.", "{} wrote to complain twice.",
                       "Forwarded from {} without comment."], lambda f: f.email()),
    "PHONE_NUMBER": (["Call the office on {} before noon.", "Try {} after six.", "Texted {} and heard nothing."],
                     lambda f: f.phone_number()),
    "CREDIT_CARD": (["The refund went to card {} last week.", "Charged {} twice for one order.",
                     "Use {} for the next one."], lambda f: f.credit_card_number()),
    "IBAN_CODE": (["Please wire the deposit to {} today.", "Send it to {} as before.", "{} is the one to use."],
                  lambda f: f.iban()),
    "IP_ADDRESS": (["The login came from {} at night.", "Blocked {} after the third try.", "It resolved to {} here."],
                   lambda f: f.ipv4()),
    "URL": (["The full review is posted at {} now.", "See {} for the rest.", "I found it on {} by chance."],
            lambda f: f.url()),
    "US_SSN": (["My social security number is {} as requested.", "Number {} on the form.",
                "They typed {} into the box."], lambda f: f.ssn()),
    "DATE_TIME": (["I was born on {} in a small town.", "The contract started {} and ran a year.",
                   "Since {} nothing has worked."], _date_of_birth),
    "PERSON": (["Yesterday {} complained about the delivery.", "The manager, {}, never called back.",
                "Ask {} about the refund."], lambda f: f.name()),
    "LOCATION": (["The parcel was stuck in {} for days.", "We drove to {} for the weekend.",
                  "{} has the cheapest branch."], lambda f: random.choice([f.city(), f.state(), f.country()])),
}
FILLER = ["The film was slow but the ending made up for it.", "Service was friendly and quick.",
          "I would not order this again.", "Great value for the price, five stars.",
          "The battery died after two days of use.", "Delivery took longer than promised."]


def _overlaps(finding, plant: tuple[str, int, int]) -> bool:
    return finding.start < plant[2] and plant[1] < finding.end


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
        templates, make = TEMPLATES[kind]
        template, value = random.choice(templates), make(fake)
        prefix = random.choice(FILLER) + " "
        text = prefix + template.format(value)
        start = len(prefix) + template.index("{}")
        texts.append(text)
        planted.append((kind, start, start + len(value)))
    scanner = PIIScanner()
    found = scanner.scan(texts)
    stats = {k: {"planted": 0, "recalled": 0, "redacted": 0, "detected": 0, "correct": 0} for k in kinds}
    for plant, findings in zip(planted, found):
        if plant:
            stats[plant[0]]["planted"] += 1
            if any(f.entity == plant[0] and _overlaps(f, plant) for f in findings):
                stats[plant[0]]["recalled"] += 1
            if any(_overlaps(f, plant) for f in findings):  # found as some type: redacted all the same
                stats[plant[0]]["redacted"] += 1
        for f in findings:
            stats[f.entity]["detected"] += 1
            if plant and f.entity == plant[0] and _overlaps(f, plant):
                stats[f.entity]["correct"] += 1
    for kind, s in stats.items():
        print(json.dumps({"benchmark": "pii_planted", "type": kind, **s,
                          "precision": round(s["correct"] / s["detected"], 4) if s["detected"] else None,
                          "recall": round(s["recalled"] / s["planted"], 4) if s["planted"] else None,
                          "redacted_share": round(s["redacted"] / s["planted"], 4) if s["planted"] else None,
                          "detectable_here": kind not in scanner.not_detected}))
    print(json.dumps({"benchmark": "pii_planted", "sentences": args.n, "with_pii": sum(p is not None for p in planted),
                      "not_detected_types": scanner.not_detected}))


if __name__ == "__main__":
    main()
