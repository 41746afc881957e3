"""Identity-term rewriting: the same text with its gender, race, religion, ... terms swapped.

Used by the counterfactual fairness audit and by counterfactual data
augmentation. Term lists ship in ``resources/identity_terms.yaml`` (written for
trustfm); a user's own file in the same format works too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

# words after which possessive "her" cannot stand (so "her" is an object: him)
_NOT_A_NOUN_NEXT = {
    "and", "or", "but", "to", "for", "with", "at", "in", "on", "by", "from", "about", "as", "that", "than",
    "the", "a", "an", "is", "was", "are", "were", "be", "if", "when", "so", "too", "very", "again", "up",
    "down", "out", "off", "over", "because", "then", "now", "here", "there", "yet", "still",
}


# identity terms that are also colours: an identity term only where they name people
_COLOUR_TERMS = {"black", "white"}
_PERSON_NOUNS = re.compile(
    r"\s+(?:[a-z]+\s+)?(man|men|woman|women|people|person|persons|folks?|guys?|girls?|boys?|kids?|child|children|"
    r"teens?|teenagers?|adults?|community|communities|family|families|neighbou?rs?|friends?|students?|americans?|"
    r"voters?|athletes?|actors?|actress(?:es)?|directors?|writers?|artists?|customers?|workers?|doctors?|nurses?|"
    r"lady|ladies|gentlem[ae]n|individuals?|citizens?|residents?|patients?|neighbou?rhoods?|lives|culture|"
    r"americans?|britons?|europeans?|africans?)\b", re.I)


def _names_people(text: str, match: re.Match) -> bool:
    """Whether the term of ``match`` names people: every term does, except a colour word (black, white), which
    does where a person noun follows (at most one word between: "a black woman", "black British voters")."""
    term = match.group(3).lower()
    if term not in _COLOUR_TERMS:
        return True
    return bool(_PERSON_NOUNS.match(text, match.end()))


def _match_case(replacement: str, original: str) -> str:
    if original.isupper() and len(original) > 1:
        return replacement.upper()
    if original[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement


def _with_article(article: str | None, space: str, word: str) -> str:
    """``word`` preceded by 'a'/'an' agreeing with its first letter (when there was an article)."""
    if not article:
        return word
    want = "an" if word[:1].lower() in "aeiou" else "a"
    return _match_case(want, article) + space + word


@dataclass(frozen=True)
class Axis:
    name: str
    kind: str  # "pairs" or "groups"
    terms: tuple[str, ...]
    counterpart: dict[str, tuple[str, ...]]  # lower-case term -> replacements
    pattern: re.Pattern


class IdentityTerms:
    """Term lists per axis and the rewriting they allow.

    ``IdentityTerms.default()`` loads the shipped lists; ``from_file(path)``
    loads a YAML file in the same format.
    """

    def __init__(self, spec: dict):
        self.axes: dict[str, Axis] = {}
        for name, body in spec.items():
            kind = body.get("kind")
            counterpart: dict[str, list[str]] = {}
            if kind == "pairs":
                for a, b in body["pairs"]:
                    counterpart.setdefault(a.lower(), []).append(b.lower())
                    counterpart.setdefault(b.lower(), []).append(a.lower())
            elif kind == "groups":
                terms = [t.lower() for t in body["terms"]]
                for t in terms:
                    counterpart[t] = [u for u in terms if u != t]
            else:
                raise ValueError(f"axis {name!r}: kind must be 'pairs' or 'groups', not {kind!r}")
            terms = tuple(sorted(counterpart, key=len, reverse=True))  # longest match first
            # an optional article before the term is captured so it can agree with the replacement
            pattern = re.compile(
                r"(?:\b(an?)(\s+))?(?<![\w-])(" + "|".join(re.escape(t) for t in terms) + r")(?![\w-])", re.I
            )
            self.axes[name] = Axis(name, kind, terms, {k: tuple(dict.fromkeys(v)) for k, v in counterpart.items()}, pattern)

    @classmethod
    def default(cls) -> "IdentityTerms":
        import yaml

        text = (resources.files("trustfm.data") / "resources" / "identity_terms.yaml").read_text(encoding="utf-8")
        return cls(yaml.safe_load(text))

    @classmethod
    def from_file(cls, path: str | Path) -> "IdentityTerms":
        import yaml

        return cls(yaml.safe_load(Path(path).read_text(encoding="utf-8")))

    def _mentions(self, text: str, axis: str) -> list[re.Match]:
        """Matches of ``axis``'s terms used as identity terms: a colour word (black, white) only where it names
        people (the next word is a person noun, or the plural form), so "wear black" is left alone."""
        return [m for m in self.axes[axis].pattern.finditer(text) if _names_people(text, m)]

    def colour_uses(self, text: str, axis: str) -> int:
        """How many of ``axis``'s terms in ``text`` were left alone because they do not name people."""
        return sum(1 for m in self.axes[axis].pattern.finditer(text) if not _names_people(text, m))

    def find(self, text: str, axis: str) -> list[str]:
        """Identity terms of ``axis`` in ``text`` (lower case, in order of appearance)."""
        return [m.group(3).lower() for m in self._mentions(text, axis)]

    def counterfactuals(self, text: str, axis: str, max_variants: int = 4) -> list[tuple[str, str]]:
        """Rewritten texts as ``(target_term, text)``; ``[]`` when the text has no term of the axis.

        Pairs axes swap every term at once (he→she and his→her together), so the
        text stays consistent. Groups axes replace every occurrence of the first
        term found with each other term, up to ``max_variants`` of them.
        """
        spec = self.axes[axis]
        found = self._mentions(text, axis)
        if not found:
            return []
        if spec.kind == "pairs":

            def swap(m: re.Match) -> str:
                if not _names_people(text, m):
                    return m.group(0)
                word = m.group(3)
                choice = spec.counterpart[word.lower()][0]
                if word.lower() == "her":
                    nxt = re.match(r"\s+([A-Za-z']+)", text[m.end() :])
                    choice = "his" if nxt and nxt.group(1).lower() not in _NOT_A_NOUN_NEXT else "him"
                elif word.lower() in ("his", "him"):
                    choice = "her"
                return _with_article(m.group(1), m.group(2) or "", _match_case(choice, word))

            rewritten = spec.pattern.sub(swap, text)
            return [(found[0].group(3).lower(), rewritten)] if rewritten != text else []
        source = found[0].group(3).lower()
        variants = []
        for target in spec.counterpart[source][:max_variants]:
            rewritten = spec.pattern.sub(
                lambda m: _with_article(m.group(1), m.group(2) or "", _match_case(target, m.group(3)))
                if m.group(3).lower() == source and _names_people(text, m)
                else m.group(0),
                text,
            )
            variants.append((target, rewritten))
        return variants
