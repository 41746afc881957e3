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

    def find(self, text: str, axis: str) -> list[str]:
        """Identity terms of ``axis`` in ``text`` (lower case, in order of appearance)."""
        return [m.group(3).lower() for m in self.axes[axis].pattern.finditer(text)]

    def counterfactuals(self, text: str, axis: str, max_variants: int = 4) -> list[tuple[str, str]]:
        """Rewritten texts as ``(target_term, text)``; ``[]`` when the text has no term of the axis.

        Pairs axes swap every term at once (he→she and his→her together), so the
        text stays consistent. Groups axes replace every occurrence of the first
        term found with each other term, up to ``max_variants`` of them.
        """
        spec = self.axes[axis]
        found = list(spec.pattern.finditer(text))
        if not found:
            return []
        if spec.kind == "pairs":

            def swap(m: re.Match) -> str:
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
                if m.group(3).lower() == source
                else m.group(0),
                text,
            )
            variants.append((target, rewritten))
        return variants
