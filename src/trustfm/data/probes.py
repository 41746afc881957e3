"""Probe sets for fairness audits: labelled texts with the group columns they test.

- ``hatecheck``: HateCheck functional tests (Röttger et al., 2021); groups:
  ``target_ident`` (``none`` where no identity is targeted) and ``functionality``.
- ``jigsaw-templates``: Jigsaw/Conversation AI sentence templates (Dixon et al.,
  2018); the identity term of each sentence is recovered from ``words.csv``
  (longest match); groups: ``identity``, ``identity_subtype``, ``template``.
- ``eec-style``: trustfm's own sentiment probe in the style of the Equity
  Evaluation Corpus (templates × gender- and race-associated first names and
  gendered noun phrases × emotion words); groups: ``gender``, ``race``, ``emotion``.
- a path: a user's probe file (CSV/TSV/JSONL/Parquet) with ``text`` and
  ``label`` columns; every other column is a group column.

Each probe has a ``positive_label`` in its own label vocabulary (``hateful``,
``toxic``, ``positive``); the audit maps the model's positive class onto it.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from trustfm.errors import ConfigError, DataError


def shared_data_dir() -> Path:
    """Where the built-in probes' files are found when no folder is given: ``$TRUSTFM_DATA_DIR``, else
    ``shared/data`` beside the trustfm checkout (never the current working directory)."""
    configured = os.environ.get("TRUSTFM_DATA_DIR")
    return Path(configured).expanduser() if configured else Path(__file__).resolve().parents[4] / "shared" / "data"

BUILT_IN = ("hatecheck", "jigsaw-templates", "eec-style")


@dataclass
class ProbeSet:
    name: str
    texts: list[str]
    labels: list[str]
    positive_label: str
    groups: dict[str, list[str]] = field(default_factory=dict)
    source: str = ""
    descriptive: tuple[str, ...] = ()  # group columns that describe the test, not a protected group
    task: str | None = None  # what its labels mean (sentiment, hate_speech, toxicity); None: a user's file, unknown

    def __len__(self) -> int:
        return len(self.texts)


def _shared(data_root: Path | None, *parts: str) -> Path:
    root = data_root or shared_data_dir()
    path = root.joinpath(*parts)
    if not path.exists():
        raise DataError(f"probe data not found (pass --probe-data DIR pointing at the folder)", file=str(path))
    return path


def load_hatecheck(folder: Path | None = None) -> ProbeSet:
    """HateCheck's 3,728 test cases (``test_suite_cases.csv``)."""
    from trustfm.data.io import read_table

    path = Path(folder) / "test_suite_cases.csv" if folder else _shared(None, "hatecheck", "test_suite_cases.csv")
    frame = read_table(path)
    for column in ("test_case", "label_gold", "target_ident", "functionality"):
        if column not in frame.columns:
            raise DataError("required column is missing", file=str(path), column=column)
    return ProbeSet(
        name="hatecheck",
        texts=[str(t).strip() for t in frame["test_case"]],
        labels=[str(v) for v in frame["label_gold"]],
        positive_label="hateful",
        task="hate_speech",
        groups={
            "target_ident": [str(v) if isinstance(v, str) and v else "none" for v in frame["target_ident"]],
            "functionality": [str(v) for v in frame["functionality"]],
        },
        source=str(path),
        descriptive=("functionality",),
    )


def load_jigsaw_templates(folder: Path | None = None) -> ProbeSet:
    """Jigsaw sentence templates with the identity term recovered from ``words.csv``."""
    from trustfm.data.io import read_table

    base = Path(folder) if folder else _shared(None, "jigsaw_sentence_templates")
    sentences = read_table(base / "en_sentence_templates.csv")
    words = read_table(base / "words.csv")
    identity = words[words["type"] == "identity"]
    identity = identity[identity["connotation"] == "neutral"]
    subtype = {str(w).lower(): str(s) for w, s in zip(identity["word"], identity["subtype"])}
    terms = sorted(subtype, key=len, reverse=True)
    pattern = re.compile(r"(?<![\w-])(" + "|".join(re.escape(t) for t in terms) + r")(?![\w-])", re.I)
    texts, found, kinds = [], [], []
    for phrase in sentences["phrase"]:
        phrase = str(phrase)
        # the identity term ends the name/you-are templates; elsewhere the longest match wins
        matches = [m.group(1).lower() for m in pattern.finditer(phrase)]
        term = max(matches, key=len) if matches else "none"
        texts.append(phrase)
        found.append(term)
        kinds.append(subtype.get(term, "none"))
    return ProbeSet(
        name="jigsaw-templates",
        texts=texts,
        labels=[str(v) for v in sentences["toxicity"]],
        positive_label="toxic",
        task="toxicity",
        groups={"identity": found, "identity_subtype": kinds, "template": [str(v) for v in sentences["template"]]},
        source=str(base),
        descriptive=("template",),
    )


def load_eec_style() -> ProbeSet:
    """trustfm's own EEC-style sentiment probe (``resources/eec_style_probe.yaml``)."""
    import yaml

    spec = yaml.safe_load(
        (resources.files("trustfm.data") / "resources" / "eec_style_probe.yaml").read_text(encoding="utf-8")
    )
    persons: list[tuple[str, str, str]] = []  # (words, gender, race)
    for entry in spec["persons"]["names"]:
        persons += [(w, entry["gender"], entry["race"]) for w in entry["words"]]
    for entry in spec["persons"]["phrases"]:
        persons += [(w, entry["gender"], "unspecified") for w in entry["words"]]
    texts, labels, gender, race, emotion = [], [], [], [], []
    for template, (person, g, r), (name, body) in itertools.product(
        spec["templates"], persons, spec["emotions"].items()
    ):
        slot = "situation" if "{situation}" in template else "emotion"
        fillers = body["situations"] if slot == "situation" else body["words"]
        for word in fillers:
            text = template.format(person=person, emotion=word, situation=word)
            texts.append(text[0].upper() + text[1:])
            labels.append(body["sentiment"])
            gender.append(g)
            race.append(r)
            emotion.append(name)
    return ProbeSet(
        name="eec-style",
        texts=texts,
        labels=labels,
        positive_label="positive",
        task="sentiment",
        groups={"gender": gender, "race": race, "emotion": emotion},
        source="trustfm/data/resources/eec_style_probe.yaml",
        descriptive=("emotion",),
    )


def load_probe_file(path: Path, positive_label: str | None) -> ProbeSet:
    """A user's probe: ``text`` and ``label`` columns; all other columns are groups."""
    from trustfm.data.io import read_table
    from trustfm.data.validate import validate_table

    frame = read_table(path)
    group_columns = [c for c in frame.columns if c not in ("text", "label")]
    part = validate_table(frame, file=str(path), text_column="text", label_column="label", group_columns=group_columns)
    labels = sorted(set(part.labels))
    if positive_label is None:
        if len(labels) != 2:
            raise ConfigError(f"probe {path} has labels {labels}: say which is positive with --probe-positive")
        positive_label = labels[-1]
    return ProbeSet(path.stem, part.texts, part.labels, positive_label, part.groups, str(path))


def load_probe(name: str, *, data_dir: Path | None = None, positive_label: str | None = None) -> ProbeSet:
    """A built-in probe by name, or a probe file by path."""
    if name == "hatecheck":
        return load_hatecheck(data_dir)
    if name == "jigsaw-templates":
        return load_jigsaw_templates(data_dir)
    if name == "eec-style":
        return load_eec_style()
    path = Path(name)
    if path.exists():
        return load_probe_file(path, positive_label)
    raise ConfigError(f"unknown probe '{name}': use one of {BUILT_IN} or a path to a probe file")
