"""Text perturbations: small edits that should not change a label (invariance) or should (directional).

Invariance: typos (adjacent swap, insertion, deletion, keyboard neighbour),
casing, punctuation, whitespace, contractions, homoglyphs (Cyrillic
look-alikes), zero-width characters, changed first names and changed numbers.
Directional: ``negation`` inserts "not" after the first copula (or removes an
existing negation), so a sentiment label should flip.

Each perturbation is ``(text, rng) -> str | None`` (None: not applicable to
this text), seeded by the caller so its use is reproducible. The robustness
audit measures them (``trustfm.audit.robustness.perturb``); training can augment with them
(``trustfm.data.augment.perturbation_augment``).
"""

from __future__ import annotations

import re
import string
from typing import Callable, Sequence

import numpy as np

_KEYBOARD = {
    "q": "wa", "w": "qes", "e": "wrd", "r": "etf", "t": "ryg", "y": "tuh", "u": "yij", "i": "uok", "o": "ipl",
    "p": "ol", "a": "qsz", "s": "awdz", "d": "sefx", "f": "drgc", "g": "fthv", "h": "gyjb", "j": "hukn",
    "k": "jilm", "l": "kop", "z": "asx", "x": "zsdc", "c": "xdfv", "v": "cfgb", "b": "vghn", "n": "bhjm", "m": "njk",
}
_HOMOGLYPHS = {"a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "x": "х", "y": "у", "i": "і"}
_CONTRACTIONS = [("is not", "isn't"), ("are not", "aren't"), ("was not", "wasn't"), ("do not", "don't"),
                 ("does not", "doesn't"), ("did not", "didn't"), ("can not", "can't"), ("it is", "it's"),
                 ("i am", "i'm"), ("you are", "you're"), ("they are", "they're"), ("will not", "won't")]
_FIRST_NAMES = ["John", "Mary", "James", "Linda", "Ahmed", "Mei", "Carlos", "Aisha", "Ivan", "Priya", "Kwame", "Sofia"]
_COPULA = re.compile(r"\b(is|was|are|were|'s|am)\b(?!\s+(not|n't)\b)", re.I)
_WORD = re.compile(r"[A-Za-z]{4,}")


# hashtags, handles and links: renaming or misspelling inside them changes what they point at, not how a person
# wrote; the word perturbations leave them alone (a text with nothing else to edit is not perturbed)
_PROTECTED = re.compile(r"(?:https?://|www\.)\S+|[#@]\w+")


def _unprotected(text: str, matches) -> list[re.Match]:
    spans = [m.span() for m in _PROTECTED.finditer(text)]
    return [m for m in matches if not any(start <= m.start() < end for start, end in spans)]


def _pick_word(text: str, rng) -> re.Match | None:
    words = _unprotected(text, _WORD.finditer(text))
    return words[rng.integers(len(words))] if words else None


def _edit_word(text: str, rng, edit: Callable[[str, np.random.Generator], str]) -> str | None:
    m = _pick_word(text, rng)
    if m is None:
        return None
    return text[: m.start()] + edit(m.group(0), rng) + text[m.end():]


def typo_swap(text, rng):
    def edit(w, r):
        i = int(r.integers(1, len(w) - 2))
        return w[:i] + w[i + 1] + w[i] + w[i + 2:]
    return _edit_word(text, rng, edit)


def typo_insert(text, rng):
    return _edit_word(text, rng, lambda w, r: (lambda i: w[:i] + string.ascii_lowercase[int(r.integers(26))] + w[i:])(int(r.integers(1, len(w)))))


def typo_delete(text, rng):
    return _edit_word(text, rng, lambda w, r: (lambda i: w[:i] + w[i + 1:])(int(r.integers(1, len(w) - 1))))


def typo_keyboard(text, rng):
    def edit(w, r):
        spots = [i for i, ch in enumerate(w) if ch.lower() in _KEYBOARD]
        i = spots[int(r.integers(len(spots)))]
        options = _KEYBOARD[w[i].lower()]
        return w[:i] + options[int(r.integers(len(options)))] + w[i + 1:]
    return _edit_word(text, rng, edit)


def casing_upper(text, rng):
    return text.upper() if text.upper() != text else None


def casing_lower(text, rng):
    return text.lower() if text.lower() != text else None


def punctuation_strip(text, rng):
    out = re.sub(r"\s+", " ", "".join(ch for ch in text if ch not in string.punctuation)).strip()
    return out if out != text.strip() and out else None


def whitespace(text, rng):
    return "  " + re.sub(r" ", "   ", text, count=3) + " \t"


def contractions(text, rng):
    lowered = text.lower()
    for long, short in _CONTRACTIONS:
        for a, b in ((long, short), (short, long), (short.replace("n't", " n't"), long)):
            if re.search(rf"\b{re.escape(a)}\b", lowered):
                return re.sub(rf"\b{re.escape(a)}\b", b, text, count=1, flags=re.I)
    return None


def homoglyph(text, rng):
    spots = [i for i, ch in enumerate(text) if ch in _HOMOGLYPHS]
    if not spots:
        return None
    chosen = set(rng.choice(spots, size=min(3, len(spots)), replace=False).tolist())
    return "".join(_HOMOGLYPHS[ch] if i in chosen else ch for i, ch in enumerate(text))


def zero_width(text, rng):
    m = _pick_word(text, rng)
    if m is None:
        return None
    w = m.group(0)
    i = int(rng.integers(1, len(w)))
    return text[: m.start()] + w[:i] + "\u200b" + w[i:] + text[m.end():]


def names(text, rng):
    found = [n for n in _FIRST_NAMES if _unprotected(text, re.finditer(rf"\b{n}\b", text))]
    if not found:
        capitalised = _unprotected(text, re.finditer(r"(?<![.!?]\s)(?<!^)\b([A-Z][a-z]{2,})\b", text))
        if not capitalised:
            return None
        found = [capitalised[0].group(1)]
    other = [n for n in _FIRST_NAMES if n != found[0]]
    replacement = other[int(rng.integers(len(other)))]
    spans = [m.span() for m in _PROTECTED.finditer(text)]
    return re.sub(rf"\b{found[0]}\b", lambda m: m.group(0) if any(a <= m.start() < b for a, b in spans)
                  else replacement, text)


def numbers(text, rng):
    if not re.search(r"\d", text):
        return None
    return re.sub(r"\d+", lambda m: str(int(m.group(0)) + int(rng.integers(1, 9))), text)


_NEGATED = re.compile(r"\b(is|was|are|were|am|do|does|did)\s+(not|n't)\b", re.I)


def negation(text, rng):
    """Negate the first copula ("is" -> "is not"), or remove an existing negation ("is not" -> "is")."""
    negated = _NEGATED.search(text)
    m = _COPULA.search(text)
    if negated and (m is None or negated.start() <= m.start()):
        return text[: negated.start()] + negated.group(1) + text[negated.end():]
    if m is None:
        return None
    return text[: m.end()] + " not" + text[m.end():]


INVARIANCE: dict[str, Callable] = {
    "typo_swap": typo_swap, "typo_insert": typo_insert, "typo_delete": typo_delete, "typo_keyboard": typo_keyboard,
    "casing_upper": casing_upper, "casing_lower": casing_lower, "punctuation_strip": punctuation_strip,
    "whitespace": whitespace, "contractions": contractions, "homoglyph": homoglyph, "zero_width": zero_width,
    "names": names, "numbers": numbers,
}
DIRECTIONAL: dict[str, Callable] = {"negation": negation}


def perturb_texts(texts: Sequence[str], name: str, perturb: Callable, *, seed: int) -> tuple[list[int], list[str]]:
    """The positions of the ``texts`` that perturbation ``name`` changes, and their variants. Each text's random
    draw depends only on (seed, position, name), so every audit that asks sees the same variants."""
    rows, variants = [], []
    for i, text in enumerate(texts):
        out = perturb(text, np.random.default_rng([seed, i, len(name)]))
        if out is not None and out != text:
            rows.append(i)
            variants.append(out)
    return rows, variants
