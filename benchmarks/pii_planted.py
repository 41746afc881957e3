"""Recall and precision of trustfm's PII scanner per type, per phone and card format and per name origin.

A planted-PII corpus generated with Faker: each sentence carries one value of a
known type at a known span, in one of three templates per type (one with the
context words Presidio looks for, two without), after a filler sentence. A
third of the sentences carry none. Phone numbers are written in 18 national and
international formats (with a country code, spaces, dashes, dots, brackets, bare
digits) with random digits, valid or not: a redactor must mask what looks like a
number. Cards come bare, spaced and dashed. Person names are drawn from 19
Faker locales grouped by origin.

A detection counts as correct when it overlaps a planted span of the same type;
``redacted_share`` counts a planted value found as any type (a city the model
calls a person is redacted all the same). Precision counts every detection in
the corpus, so the PII-free sentences' false positives lower it; they are listed
by type in the summary line.

Runs four arms on the same corpus: Presidio with our date recogniser only, then adding our shape
recognisers (phones, cards, SSNs), URL boundaries, and proper-noun names (the full scanner). Prints a
summary line per arm and, for the full scanner, one JSON line per type, per phone format, per card format and per name
origin, then a summary line.

Usage: python benchmarks/pii_planted.py [--n 3000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
from collections import Counter, defaultdict

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _digits(n: int) -> str:
    return "".join(random.choice("0123456789") for _ in range(n))


def _area() -> str:
    return random.choice("23456789") + _digits(2)


PHONE_FORMATS = {
    "nanp dashes": lambda: f"{_area()}-{_area()}-{_digits(4)}",
    "nanp brackets": lambda: f"({_area()}) {_area()}-{_digits(4)}",
    "nanp dots": lambda: f"{_area()}.{_area()}.{_digits(4)}",
    "+1 spaces": lambda: f"+1 {_area()} {_area()} {_digits(4)}",
    "+1 dashes": lambda: f"+1-{_area()}-{_area()}-{_digits(4)}",
    "nanp extension": lambda: f"{_area()}-{_area()}-{_digits(4)} x{_digits(3)}",
    "uk international": lambda: f"+44 20 {_digits(4)} {_digits(4)}",
    "uk national": lambda: f"020 {_digits(4)} {_digits(4)}",
    "uk mobile": lambda: f"07{_digits(3)} {_digits(6)}",
    "00 prefix": lambda: f"0044 20 {_digits(4)} {_digits(4)}",
    "india": lambda: f"+91 9{_digits(4)} {_digits(5)}",
    "nigeria": lambda: f"+234 80{_digits(1)} {_digits(3)} {_digits(4)}",
    "france": lambda: f"+33 6 {_digits(2)} {_digits(2)} {_digits(2)} {_digits(2)}",
    "france national": lambda: f"06 {_digits(2)} {_digits(2)} {_digits(2)} {_digits(2)}",
    "germany": lambda: f"+49 30 {_digits(8)}",
    "bare 10 digits": lambda: random.choice("23456789") + _digits(9),
    "bare 11 digits": lambda: "07" + _digits(9),
    "e.164": lambda: "+44" + "7" + _digits(9),
}


PHONE_LOCALES = ["en_US", "en_GB", "en_IN", "fr_FR", "de_DE", "pt_BR", "en_NG", "es_MX", "tr_TR", "pl_PL", "id_ID",
                 "vi_VN", "en_AU", "it_IT", "nl_NL"]


def _card_digits(fake) -> str:
    return fake.credit_card_number(card_type=random.choice(["visa16", "mastercard", "discover"]))


CARD_FORMATS = {
    "bare": lambda d: d,
    "spaces": lambda d: " ".join(d[i:i + 4] for i in range(0, len(d), 4)),
    "dashes": lambda d: "-".join(d[i:i + 4] for i in range(0, len(d), 4)),
}

NAME_ORIGINS = {
    "English (US, UK)": ["en_US", "en_GB"],
    "South Asian": ["en_IN", "en_PK"],
    "West African": ["yo_NG", "ig_NG", "ha_NG", "tw_GH", "en_NG"],
    "East and Southern African": ["en_KE", "sw", "zu_ZA"],
    "French": ["fr_FR"],
    "Hispanic": ["es_MX", "es_ES"],
    "German and Polish": ["de_DE", "pl_PL"],
    "Turkish": ["tr_TR"],
    "Vietnamese": ["vi_VN"],
    "Indonesian": ["id_ID"],
    "Brazilian": ["pt_BR"],
}


def _date_of_birth(fake) -> str:
    return fake.date_of_birth().strftime(random.choice(["%Y-%m-%d", "%B %d, %Y", "%d/%m/%Y", "%m/%d/%Y", "%d %b %Y"]))


# Three templates per type: the first has the context words Presidio's recognisers look for, the other two do not.
TEMPLATES = {
    "EMAIL_ADDRESS": ["You can reach me at {} if anything changes.", "{} wrote to complain twice.",
                      "Forwarded from {} without comment."],
    "PHONE_NUMBER": ["Call the office on {} before noon.", "Try {} after six.", "Texted {} and heard nothing."],
    "CREDIT_CARD": ["The refund went to card {} last week.", "Charged {} twice for one order.",
                    "Use {} for the next one."],
    "IBAN_CODE": ["Please wire the deposit to {} today.", "Send it to {} as before.", "{} is the one to use."],
    "IP_ADDRESS": ["The login came from {} at night.", "Blocked {} after the third try.", "It resolved to {} here."],
    "URL": ["The full review is posted at {} now.", "See {} for the rest.", "I found it on {} by chance."],
    "US_SSN": ["My social security number is {} as requested.", "Number {} on the form.",
               "They typed {} into the box."],
    "DATE_TIME": ["I was born on {} in a small town.", "The contract started {} and ran a year.",
                  "Since {} nothing has worked."],
    "PERSON": ["Yesterday {} complained about the delivery.", "The manager, {}, never called back.",
               "Ask {} about the refund."],
    "LOCATION": ["The parcel was stuck in {} for days.", "We drove to {} for the weekend.",
                 "{} has the cheapest branch."],
}
FILLER = ["The film was slow but the ending made up for it.", "Service was friendly and quick.",
          "I would not order this again.", "Great value for the price, five stars.",
          "The battery died after two days of use.", "Delivery took longer than promised."]
# PII-free sentences with the numbers, capitals and punctuation that trip recognisers: versions, prices, ratings,
# model numbers, titles, brands, hashtags, mentions and run-together sentences.
PII_FREE = FILLER + [
    "Version 2.3.1 fixed the crash on start-up.", "It costs $1,299.99 and ships in 3 to 5 days.",
    "Rated 4.5 out of 5 by 1,024 buyers.", "The iPhone 15 Pro runs iOS 17 without trouble.",
    "Room 101 was cold and the Wi-Fi kept dropping.", "Star Wars is still the best of the lot.",
    "Black Friday deals were a let-down this year.", "The Lord of the Rings extended edition is worth it.",
    "Order 7 of 12 arrived broken.", "Windows 11 update KB5031455 broke my printer.",
    "Loved it!!! #bestbuy #happy #JohnLewis", "Thanks to the support team for the quick reply.",
    "Great product.Would buy again.", "The sequel..sorry, the prequel, was better.",
    "Chapter 3 starts at page 45.", "Model X200 runs at 60 Hz and 1080p.",
]


def _overlaps(finding, plant: tuple[str, int, int]) -> bool:
    return finding.start < plant[2] and plant[1] < finding.end


def _value(kind: str, fake, fakes: dict, plan: dict) -> tuple[str, str | None]:
    """A planted value of ``kind`` and its format or origin group (None where the type has one form)."""
    if kind == "PHONE_NUMBER":
        if random.random() < 0.25:
            # formats we did not write the recogniser from: Faker's own, per locale
            locale = random.choice(PHONE_LOCALES)
            return fakes[locale].phone_number(), f"faker {locale}"
        form = random.choice(list(PHONE_FORMATS))
        return PHONE_FORMATS[form](), form
    if kind == "CREDIT_CARD":
        form = random.choice(list(CARD_FORMATS))
        return CARD_FORMATS[form](_card_digits(fake)), form
    if kind == "PERSON":
        origin = random.choice(list(NAME_ORIGINS))
        local = fakes[random.choice(NAME_ORIGINS[origin])]
        return f"{local.first_name()} {local.last_name()}", origin
    return plan[kind](fake), None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from faker import Faker

    from trustfm.data.pii import EXTENSIONS, PIIScanner

    random.seed(args.seed)
    Faker.seed(args.seed)
    fake = Faker("en_US")
    fakes = {loc: Faker(loc) for loc in {*PHONE_LOCALES, *(x for locs in NAME_ORIGINS.values() for x in locs)}}
    plan = {"EMAIL_ADDRESS": lambda f: f.email(), "IBAN_CODE": lambda f: f.iban(), "IP_ADDRESS": lambda f: f.ipv4(),
            "URL": lambda f: f.url(), "US_SSN": lambda f: f.ssn(), "DATE_TIME": _date_of_birth,
            "LOCATION": lambda f: random.choice([f.city(), f.state(), f.country()])}
    texts, planted = [], []
    kinds = list(TEMPLATES)
    for i in range(args.n):
        if i % 3 == 2:
            texts.append(random.choice(PII_FREE))
            planted.append(None)
            continue
        kind = kinds[i % len(kinds)]
        template = random.choice(TEMPLATES[kind])
        value, group = _value(kind, fake, fakes, plan)
        prefix = random.choice(FILLER) + " "
        text = prefix + template.format(value)
        start = len(prefix) + template.index("{}")
        texts.append(text)
        planted.append((kind, start, start + len(value), group))
    arms = {"presidio": (), "+shapes": ("shapes",), "+url_boundaries": ("shapes", "url_boundaries"),
            "trustfm": EXTENSIONS}
    for arm, extensions in arms.items():
        scanner = PIIScanner(extensions=extensions)
        _report(arm, scanner, texts, planted, kinds, detailed=arm == "trustfm", n=args.n)


def _report(arm: str, scanner, texts, planted, kinds, *, detailed: bool, n: int) -> None:
    """One summary line for the arm; with ``detailed`` one line per type, per format and per name origin too."""
    found = scanner.scan(texts)
    stats = {k: Counter() for k in kinds}
    groups: dict[tuple[str, str], Counter] = defaultdict(Counter)
    false_on_free, false_spans = Counter(), Counter()
    for text, plant, findings in zip(texts, planted, found):
        if plant is None:
            false_on_free.update(f.entity for f in findings)
            false_spans.update(f"{f.entity}: {text[f.start:f.end]}" for f in findings)
        else:
            kind, group = plant[0], plant[3]
            recalled = any(f.entity == kind and _overlaps(f, plant) for f in findings)
            redacted = any(_overlaps(f, plant) for f in findings)
            stats[kind].update(planted=1, recalled=int(recalled), redacted=int(redacted))
            if group is not None:
                groups[(kind, group)].update(planted=1, recalled=int(recalled), redacted=int(redacted))
        for f in findings:
            stats.setdefault(f.entity, Counter())["detected"] += 1
            if plant and f.entity == plant[0] and _overlaps(f, plant):
                stats[f.entity]["correct"] += 1

    def ratio(a: int, b: int):
        return round(a / b, 4) if b else None

    if detailed:
        for kind, s in stats.items():
            print(json.dumps({"benchmark": "pii_planted", "arm": arm, "type": kind, "planted": s["planted"],
                              "recalled": s["recalled"], "detected": s["detected"], "correct": s["correct"],
                              "precision": ratio(s["correct"], s["detected"]),
                              "recall": ratio(s["recalled"], s["planted"]),
                              "redacted_share": ratio(s["redacted"], s["planted"]),
                              "detectable_here": kind not in scanner.not_detected}))
        for (kind, group), s in sorted(groups.items()):
            label = "origin" if kind == "PERSON" else "format"
            print(json.dumps({"benchmark": "pii_planted", "arm": arm, "type": kind, label: group,
                              "planted": s["planted"], "recall": ratio(s["recalled"], s["planted"]),
                              "redacted_share": ratio(s["redacted"], s["planted"])}))
    structured = [k for k in kinds if k not in ("PERSON", "LOCATION", "DATE_TIME")]
    detected = sum(s["detected"] for s in stats.values())
    correct = sum(s["correct"] for s in stats.values())
    print(json.dumps({
        "benchmark": "pii_planted", "arm": arm, "extensions": list(scanner.extensions), "sentences": n,
        "with_pii": sum(p is not None for p in planted), "pii_free": sum(p is None for p in planted),
        "recall": {k: ratio(stats[k]["recalled"], stats[k]["planted"]) for k in kinds},
        "recall_structured": ratio(sum(stats[k]["recalled"] for k in structured),
                                   sum(stats[k]["planted"] for k in structured)),
        "person_recall_worst_origin": min((ratio(s["recalled"], s["planted"]) for (k, _), s in groups.items()
                                           if k == "PERSON"), default=None),
        "precision_all_types": ratio(correct, detected), "person_precision": ratio(stats["PERSON"]["correct"],
                                                                                 stats["PERSON"]["detected"]),
        "false_positives_on_pii_free": dict(false_on_free), "false_positive_spans": dict(false_spans.most_common(10)),
        "not_detected_types": scanner.not_detected}))

if __name__ == "__main__":
    main()
