"""PII: Presidio finds planted values, redaction modes behave, and planted PII never reaches a run's files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import make_rows, run_cli, write_csv
from trustfm.data.pii import PIIScanner

PLANTED = {
    "EMAIL_ADDRESS": "maria.lopez@example.com",
    "CREDIT_CARD": "4111 1111 1111 1111",
    "IBAN_CODE": "DE89370400440532013000",
    "IP_ADDRESS": "192.168.14.20",
    "US_SSN": "219-09-9999",
    "PHONE_NUMBER": "(212) 555-0187",
}


@pytest.fixture(scope="module")
def scanner():
    return PIIScanner()


def test_each_planted_type_is_found_and_redacted(scanner):
    for entity, value in PLANTED.items():
        text = f"note for the file: {value} thanks"
        found = scanner.scan_one(text)
        assert [(f.entity, text[f.start:f.end]) for f in found] == [(entity, value)], (entity, found)
        assert value not in scanner.redact_one(text, mode="placeholder")
        assert scanner.redact_one(text, mode="mask") == text.replace(value, "*" * len(value))
    assert scanner.redact_one("mail maria.lopez@example.com now", mode="placeholder") == "mail <EMAIL> now"


def test_names_places_and_spelt_out_dates_are_found(scanner):
    assert scanner.not_detected == []  # `make` installs spaCy's small English pipeline (requirements/ner.txt)
    text = "Yesterday Maria Lopez flew from Boston to Denver; she was born on February 9, 1961."
    assert [(f.entity, text[f.start:f.end]) for f in scanner.scan_one(text)] == [
        ("PERSON", "Maria Lopez"), ("LOCATION", "Boston"), ("LOCATION", "Denver"), ("DATE_TIME", "February 9, 1961")]
    assert (scanner.redact_one(text) ==
            "Yesterday <PERSON> flew from <LOCATION> to <LOCATION>; she was born on <DATE>.")
    # the NER model's relative dates and durations are not personal data, and must not swallow the IP next to them
    text = "The login came from 10.20.30.40 at night, two days ago."
    assert [(f.entity, text[f.start:f.end]) for f in scanner.scan_one(text)] == [("IP_ADDRESS", "10.20.30.40")]


@pytest.mark.parametrize("value", [
    "+1 691 868 6636", "+1-379-550-2492", "+44 20 5799 9211", "6918686636", "07700900123", "0044 20 7946 0958",
    "+91 98765 43210", "+234 803 123 4567", "+33 6 12 34 56 78", "691.868.6636", "691-868-6636 x123",
])
def test_phone_numbers_in_everyday_formats_are_found_valid_or_not(scanner, value):
    text = f"Texted {value} and heard nothing."
    assert [(f.entity, text[f.start:f.end]) for f in scanner.scan_one(text)] == [("PHONE_NUMBER", value)]


@pytest.mark.parametrize("value", ["2296 0487 6475 9385", "2296-0487-6475-9385", "2296048764759385",
                                   "000-12-3456"])
def test_cards_in_groups_and_social_security_numbers_of_any_range_are_found(scanner, value):
    text = f"Charged {value} twice."
    entity = "US_SSN" if value.count("-") == 2 else "CREDIT_CARD"
    assert [(f.entity, text[f.start:f.end]) for f in scanner.scan_one(text)] == [(entity, value)]


@pytest.mark.parametrize("name", ["Priya Raghunathan", "Oluwasanmi Soyinka", "Nneka Ihejirika", "Kojo Twumasi",
                                  "Gilbert Lemaire", "Titilayo Ninalowo"])
def test_names_of_many_origins_are_masked(scanner, name):
    text = f"Service was friendly and quick. Ask {name} about the refund."
    assert name not in scanner.redact_one(text)


def test_urls_end_at_url_boundaries_and_handles_follow_their_policy(scanner):
    for text in ("refugees.Their homes were lost", "the sequel..sorry, the prequel", "Great product.Would buy again"):
        assert scanner.scan_one(text) == [], text
    assert scanner.redact_one("See www.example.com/page. Or example.org!") == "See <URL>. Or <URL>!"
    text = "Loved it #BestBuy #JohnSmith, thanks @mary_jones (mail mary@jones.com)"
    assert scanner.redact_one(text) == "Loved it #BestBuy #JohnSmith, thanks <HANDLE> (mail <EMAIL>)"
    keep_mentions = PIIScanner(mentions="keep", hashtags="mask")
    assert keep_mentions.redact_one(text) == "Loved it <HANDLE> <HANDLE>, thanks @mary_jones (mail <EMAIL>)"


def test_batched_scan_matches_one_text_at_a_time(scanner):
    texts = ["", "Ask Maria Lopez in Boston.", "card 4111 1111 1111 1111 please", "nothing here", "Paris in May"]
    assert scanner.scan(texts, batch_size=2) == [scanner.scan_one(t) for t in texts]


def test_without_a_named_entity_model_names_and_places_are_reported_not_detected(monkeypatch):
    import trustfm.data.pii as pii

    monkeypatch.setattr(pii, "_spacy_model", lambda: None)  # as on a machine without requirements/ner.txt
    blank = PIIScanner()
    assert blank.not_detected == ["PERSON", "LOCATION"]
    text = "Maria Lopez paid with 4111 1111 1111 1111 in Boston."
    assert [f.entity for f in blank.scan_one(text)] == ["CREDIT_CARD"]


def test_hash_pseudonyms_are_consistent_per_value_and_depend_on_the_salt(scanner):
    a = scanner.redact_one("a@example.com and b@example.com and a@example.com", mode="hash", salt=b"s1")
    first, second, third = [w for w in a.split() if w.startswith("<EMAIL_")]
    assert first == third != second
    assert scanner.redact_one("a@example.com", mode="hash", salt=b"s2") != first


def test_scan_and_redact_cli(tmp_path):
    rows = [{"id": "1", "text": f"card {PLANTED['CREDIT_CARD']} please refund", "note": f"from {PLANTED['IP_ADDRESS']}",
             "label": "neg"}, {"id": "2", "text": "all good", "note": "none", "label": "pos"}]
    data = write_csv(tmp_path / "pii.csv", rows)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    scanned = run_cli(["data", "scan", str(data), "--format", "json"], capture_output=True, text=True, env=env)
    assert scanned.returncode == 0, scanned.stderr
    report = json.loads(scanned.stdout)
    assert report["counts"]["text"] == {"CREDIT_CARD": 1} and report["counts"]["note"] == {"IP_ADDRESS": 1}
    assert report["not_detected"] == []
    assert PLANTED["CREDIT_CARD"] not in scanned.stdout + scanned.stderr  # row numbers, never values
    assert scanned.stderr == ""  # Presidio's device line and skipped-language warnings stay out of the output
    out = tmp_path / "redacted.csv"
    done = run_cli(["data", "redact", str(data), "-o", str(out), "--mode", "placeholder"],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    written = out.read_text()
    assert "<CREDIT_CARD>" in written and "<IP_ADDRESS>" in written
    assert PLANTED["CREDIT_CARD"] not in written and PLANTED["IP_ADDRESS"] not in written


def _every_file_text(folder: Path) -> str:
    return "\n".join(p.read_bytes().decode("utf-8", "replace") for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("redact", [True, False], ids=["redacting-run", "plain-run"])
def test_planted_pii_never_reaches_any_file_a_run_writes(tiny_model_dir, tmp_path, redact):
    """A redacting run trains on redacted text; a plain run trains on the raw text, and its audits leave out the
    example texts in which personal data is found."""
    rows = make_rows(200, seed=11)
    values = list(PLANTED.values())
    for i in range(0, 200, 5):  # PII in a fifth of the rows, train and test alike
        rows[i]["text"] += f" contact {values[i % len(values)]}"
    data = write_csv(tmp_path / "train.csv", rows)
    run_dir = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    train = run_cli(["train", "--data", str(data), "--model", str(tiny_model_dir), "--epochs", "1",
                                  "--max-length", "32", "--quiet", "--set", f"privacy.redact={str(redact).lower()}",
                                  "--set", "evaluate.bootstrap_samples=20", "-o", str(run_dir)],
                           capture_output=True, text=True, env=env)
    assert train.returncode == 0, train.stderr
    for command in (["audit", "robustness", str(run_dir), "--max-texts", "40"],
                    ["audit", "attacks", str(run_dir), "--max-texts", "40"], ["explain", str(run_dir)],
                    # the privacy audit, its reference models kept: they must hold no training text either
                    ["audit", "membership", str(run_dir), "--max-rows", "30", "--keep-reference-models"],
                    ["report", str(run_dir)]):
        done = run_cli(command, capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr
        for value in values:
            assert value not in done.stdout + done.stderr
    everything = _every_file_text(run_dir)
    report = (run_dir / "report.html").read_text()
    if redact:
        assert "<EMAIL>" in everything or "<CREDIT_CARD>" in everything or "<IP_ADDRESS>" in everything
        counts = json.loads((run_dir / "results" / "pii.json").read_text())["counts"]
        assert sum(sum(c.values()) for c in counts.values()) == 40  # one planted value in every fifth of 200 rows
        assert "Personal data redacted before training" in report
    else:
        withheld = json.loads((run_dir / "results" / "robustness.json").read_text())["examples_withheld_for_pii"]
        assert withheld > 0 and "withheld: personal data found in the text" in report
    for value in values:
        assert value not in everything, value
