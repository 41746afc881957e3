"""``AuditContext``: what every audit of one run needs, loaded once.

``trustfm audit RUN --all`` builds one context and hands it to every audit, so
the model is loaded and the data prepared (and redacted) once, not once per
audit. Everything is loaded lazily: an audit that only reads result files
loads no model.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Sequence

import numpy as np

from trustfm.config import RunConfig, load_config
from trustfm.errors import DataError
from trustfm.fileio import write_json_atomic
from trustfm.runs import RunPaths, RunRecord, existing_run

if TYPE_CHECKING:
    from trustfm.results import Interval


@dataclass(frozen=True)
class Bootstrap:
    """Interval settings every audit uses: resamples (0 = no intervals), confidence in (0, 1), the run's seed."""

    samples: int
    confidence: float
    seed: int

    def kwargs(self) -> dict:
        """As the keyword arguments of the audit functions (``bootstrap_samples``, ``confidence``, ``seed``)."""
        return {"bootstrap_samples": self.samples, "confidence": self.confidence, "seed": self.seed}

    def mean(self, values) -> "Interval":
        """Mean of per-row ``values`` (n,) with its row-resampling interval (e.g. accuracy from a 0/1 array)."""
        from trustfm.results import bootstrap_mean

        return bootstrap_mean(values, samples=self.samples, confidence=self.confidence,
                              rng=np.random.default_rng(self.seed))


class AuditContext:
    """One run folder, opened for auditing.

    Attributes: ``paths`` (:class:`~trustfm.runs.RunPaths`), ``config`` (the run's
    resolved :class:`~trustfm.config.RunConfig`), ``bootstrap``; loaded on first
    use: ``predictor``, ``data`` (the prepared splits, checked against the hashes
    recorded at training and redacted as the run was), ``eval_part``.

    What the context holds is shared by every audit of the command: an audit
    reads it and never changes it in place (add a column to a copy, as the
    fairness audit does; restore any model setting it changes).
    """

    def __init__(self, run_dir: str | Path, *, show_progress: bool = False,
                 eval_split: Literal["test", "validation"] | None = None):
        """``eval_split``: the split audits judge the model on; default test, else validation when the run has
        no test rows. Hyper-parameter search forces ``validation``, so that the test split stays unseen until the
        chosen model is audited."""
        self.paths: RunPaths = existing_run(run_dir)
        self._eval_split = eval_split
        self.config: RunConfig = load_config(self.paths.config)
        self.show_progress = show_progress
        self.bootstrap = Bootstrap(self.config.evaluate.bootstrap_samples, self.config.evaluate.confidence,
                                   self.config.seed)
        self._data_with: dict[tuple[str, ...], object] = {}

    @cached_property
    def run_info(self) -> RunRecord:
        """The run's ``run.json``."""
        return RunRecord.load(self.paths)

    @cached_property
    def predictor(self):
        """The run's best model (:class:`~trustfm.models.predictor.Predictor`), loaded once."""
        import torch

        from trustfm.models.predictor import Predictor
        from trustfm.models.threads import auto_threads

        # the cores idle now: with one core busy elsewhere, torch's default (every core) made attacks and
        # attributions several times slower
        torch.set_num_threads(auto_threads())
        return Predictor.from_run(self.paths.root)

    @property
    def label_names(self) -> list[str]:
        return self.predictor.label_names

    def data_with_groups(self, extra_group_columns: Sequence[str] = ()):
        """The prepared splits, also reading ``extra_group_columns`` (the sensitive columns an audit asks for)."""
        from trustfm.data.prepare import prepare_data
        from trustfm.data.redaction import redact_parts

        data_config = self.config.data
        columns = tuple(dict.fromkeys([*data_config.group_columns, *extra_group_columns]))
        if columns != tuple(data_config.group_columns):
            data_config = data_config.model_copy(update={"group_columns": list(columns)})
        if columns not in self._data_with:
            data = redact_parts(prepare_data(data_config, seed=self.config.seed), self.config.privacy)
            recorded = self.run_info.data_hashes
            if recorded and recorded != data.file_hashes:
                raise DataError(f"data files changed since training (hashes differ from {self.paths.run_info})")
            if data_config.on_problem.too_long != "truncate" and self.predictor.tokenizer is not None:
                # the rows training dropped (or refused) as too long are not judged either
                from trustfm.data.prepare import apply_length_policies

                apply_length_policies(data, self.predictor.tokenizer, data_config)
            self._data_with[columns] = data
        return self._data_with[columns]

    @property
    def data(self):
        """The run's train/validation/test rows (:class:`~trustfm.data.prepare.PreparedData`)."""
        return self.data_with_groups()

    @property
    def task(self) -> tuple[str | None, str]:
        """(what the labels mean, how that is known): declared in the config, read from the label names, or
        (None, "undeclared"). Audits with a task assumption (negation flips sentiment, a probe's labels) check it."""
        return task_of(self.config.task, self.run_info.label_names or [])

    @property
    def eval_split(self) -> str:
        """``"test"``, or ``"validation"`` when the run has no test rows (or the context was opened with
        ``eval_split="validation"``): the split audits judge the model on."""
        if self._eval_split is not None:
            return self._eval_split
        return "test" if len(self.data.test) else "validation"

    @property
    def eval_part(self):
        """The rows of :attr:`eval_split` (:class:`~trustfm.data.validate.LabelledTexts`)."""
        return self.eval_part_of(self.data)

    def eval_part_of(self, data):
        """The evaluation split of ``data`` (a :meth:`data_with_groups` result): test, else validation."""
        return getattr(data, self.eval_split)

    def sample_eval_texts(self, max_texts: int) -> tuple[list[str], np.ndarray, str]:
        """Up to ``max_texts`` rows of the evaluation split, drawn with the run's seed.

        Returns (texts, gold label ids (n,), a description of the sample for results).
        """
        part = self.eval_part
        rows = np.random.default_rng(self.config.seed).permutation(len(part))[:max_texts]
        unit = "images" if self.config.data.modality == "image" else "texts"
        return ([part.texts[i] for i in rows], self.data.label_ids(part)[rows],
                f"{part.file} ({len(rows)} {self.eval_split} {unit})")

    def why_no_training_rows(self, needs: str) -> str | None:
        """None when the run has training rows; else why an audit that ``needs`` them (e.g. "fitting the detector")
        cannot run: a model imported without its training data."""
        if len(self.data.train):
            return None
        return (f"{needs} needs the model's training rows, and this model was imported without them: import it "
                "again with --data TRAINING_FILE")

    def why_black_box(self, needs: str) -> str | None:
        """None unless the run's model is reachable only over HTTP; then why an audit that ``needs`` (e.g. "the
        data-quality audit needs the model's encoder") cannot run."""
        return f"{needs}, and this model is a black box behind an endpoint" if self.predictor.black_box else None

    def why_not_differentiable(self, needs: str, instead: str) -> str | None:
        """None when the run's model is a float torch model gradients flow through, else the reason an audit that
        ``needs`` them cannot run (e.g. needs "white-box attacks need the model's gradients", instead "attack its
        torch parent instead")."""
        if self.predictor.black_box:
            return f"{needs}, and this model is a black box behind an endpoint (only its answers are seen)"
        fmt = self.predictor.format
        return None if fmt == "torch" else f"{needs}, and this run's model is {fmt}: {instead}"

    def example_screen(self):
        """A fresh :class:`~trustfm.data.pii.ExampleScreen` for the example texts an audit saves."""
        from trustfm.data.pii import ExampleScreen

        return ExampleScreen(data_redacted=self.config.privacy.redact)

    def save(self, name: str, result) -> None:
        """Write a result model to ``results/<name>.json`` (atomically)."""
        write_json_atomic(self.paths.result(name), result.model_dump(mode="json"))


_SENTIMENT_LABELS = {"positive", "negative", "pos", "neg", "neutral"}
_HATE_LABELS = {"hate", "hateful", "not_hate", "nothate", "non-hate", "noHate", "offensive", "abusive"}
_TOXIC_LABELS = {"toxic", "non-toxic", "nontoxic", "not_toxic"}
# tasks whose positive class means the same thing to a probe: abusive language
COMPATIBLE_TASKS = {"toxicity": {"toxicity", "hate_speech"}, "hate_speech": {"toxicity", "hate_speech"},
                    "sentiment": {"sentiment"}, "other": {"other"}}


def task_of(declared: str | None, label_names: Sequence[str]) -> tuple[str | None, str]:
    """The run's task: ``declared`` (config ``task``), else read from ``label_names``, else None."""
    if declared:
        return declared, "declared (task in config.yaml)"
    names = {str(n).strip().lower() for n in label_names}
    for task, words in (("sentiment", _SENTIMENT_LABELS), ("hate_speech", {w.lower() for w in _HATE_LABELS}),
                        ("toxicity", _TOXIC_LABELS)):
        if names and names <= words | {"other", "none"} and names & words:
            return task, f"read from the label names {sorted(names)}"
    return None, "undeclared (set task: sentiment|toxicity|hate_speech|other when training)"


def as_context(run: "str | Path | AuditContext", *, show_progress: bool = False) -> AuditContext:
    """``run`` itself when it already is a context, else a new context for that run folder."""
    return run if isinstance(run, AuditContext) else AuditContext(run, show_progress=show_progress)
