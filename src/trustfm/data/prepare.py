"""From the data section of a run config to validated, split, labelled data.

The result is deterministic in (config, seed, file contents): ``trustfm
evaluate`` and ``trustfm report`` call :func:`prepare_data` again and check the
file hashes recorded at training time instead of storing copies of the data.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trustfm.config.schema import DataConfig
from trustfm.data.batching import EncodedTexts
from trustfm.data.io import read_table_source
from trustfm.data.split import stratified_split
from trustfm.data.validate import LabelledTexts, Rejection, label_order, labelled_columns, validate_table
from trustfm.errors import ConfigError, DataError

log = logging.getLogger("trustfm.data")


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, or of all files in a folder (sorted by relative path)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def recorded_data_hash(path: str | Path, config: DataConfig, *, known_labels: list[str] | None = None) -> str:
    """The sha256 that preparation records for one data file, computed again (``trustfm verify``).

    A text file: its bytes. An image table or folder: the table and every image it keeps, as
    :func:`~trustfm.data.images.load_labelled_images` digests them (so a changed image changes it); the images
    are checked again on the way. ``known_labels``: the run's classes, for a file other than the training file
    (its rows with other labels are refused there, as preparation refused them). Raises :class:`DataError` where
    the data can no longer be read as it was.
    """
    if config.modality == "image":
        return load_labelled(path, config, known_labels=known_labels).source_sha256 or file_sha256(path)
    return file_sha256(path)


@dataclass
class PreparedData:
    """Train/validation/test rows, the class names (index = label id) and provenance."""

    train: LabelledTexts
    validation: LabelledTexts
    test: LabelledTexts
    label_names: list[str]
    file_hashes: dict[str, str] = field(default_factory=dict)
    rejected: list[Rejection] = field(default_factory=list)
    rows_read: int = 0  # data rows in the files read; rows_read - len(rejected) = the sum of counts()
    holdout: LabelledTexts | None = None  # training-file rows kept out of training (data.split.holdout)

    def label_ids(self, part: LabelledTexts) -> np.ndarray:
        index = {name: i for i, name in enumerate(self.label_names)}
        return np.fromiter((index[x] for x in part.labels), dtype=np.int64, count=len(part))

    def counts(self) -> dict[str, int]:
        counts = {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)}
        if self.holdout is not None:
            counts["holdout"] = len(self.holdout)
        return counts

    def parts(self) -> dict[str, LabelledTexts]:
        """Every split by name, the holdout included when there is one."""
        parts = {"train": self.train, "validation": self.validation, "test": self.test}
        if self.holdout is not None:
            parts["holdout"] = self.holdout
        return parts


def load_labelled(
    path: Path, config: DataConfig, *, known_labels: list[str] | None = None, labelled: bool = True
) -> LabelledTexts:
    """Read and validate one file with the config's column mapping and policies.

    Unlabelled data (``labelled=False``, for prediction) needs only the text column. Image data
    (``data.modality: image``) is read and checked by :func:`trustfm.data.images.load_labelled_images`.
    """
    if config.modality == "image":
        from trustfm.data.images import load_labelled_images

        return load_labelled_images(Path(path), config, known_labels=known_labels, labelled=labelled)
    text_column = config.text_column
    label_column, id_column, group_columns, columns = labelled_columns(config, text_column, labelled=labelled)
    frame, source = read_table_source(path, config.format, columns=columns)
    part = validate_table(
        frame,
        file=str(path),
        text_column=text_column,
        label_column=label_column,
        id_column=id_column,
        group_columns=group_columns,
        policies=config.on_problem,
        known_labels=known_labels,
    )
    part.notes = [f"read as {source.describe()}", *source.notes, *part.notes]
    log.info(
        "%s: %d rows in, %d kept, %d dropped", path, part.rows_in, len(part), len(part.rejected)
    )
    for note in part.notes[1:]:
        log.info("%s: %s", path, note)
    return part


def rare_classes(labels: list[str], min_rows: int) -> dict[str, int]:
    """Classes with fewer than ``min_rows`` rows -> their row count."""
    from collections import Counter

    return {label: n for label, n in Counter(labels).items() if n < min_rows}


def rare_class_rejections(part: LabelledTexts, config: DataConfig) -> list[Rejection]:
    """One ``rare_class`` rejection per row of a class with fewer than ``min_class_rows`` rows, in row order."""
    rare = rare_classes(part.labels, config.min_class_rows)
    return [Rejection(part.file, int(row), config.label_column, "rare_class",
                      f"class '{label}' has {rare[label]} rows, fewer than data.min_class_rows = {config.min_class_rows}")
            for row, label in zip(part.rows, part.labels) if label in rare]


def drop_rare_classes(part: LabelledTexts, config: DataConfig) -> LabelledTexts:
    """Apply ``on_problem.rare_class`` to classes with fewer than ``min_class_rows`` training rows.

    One row labelled ``2`` in a binary file is far likelier a typo than a class:
    under the default policy it stops the run, naming the label and its first row.
    """
    rejections = rare_class_rejections(part, config)
    if not rejections:
        return part
    if config.on_problem.rare_class == "error":
        shown = ", ".join(f"'{label}' ({n} rows)"
                          for label, n in sorted(rare_classes(part.labels, config.min_class_rows).items()))
        raise DataError(f"class with fewer than data.min_class_rows = {config.min_class_rows} training rows: {shown} "
                        "(fix the labels, lower data.min_class_rows, or set data.on_problem.rare_class: drop)",
                        file=part.file, row=rejections[0].row, column=config.label_column)
    dropped = {r.row for r in rejections}
    kept = part.subset([i for i, row in enumerate(part.rows) if int(row) not in dropped])
    kept.rows_in, kept.notes, kept.source_sha256 = part.rows_in, part.notes, part.source_sha256
    kept.rejected = sorted(part.rejected + rejections, key=lambda r: r.row)
    return kept


def prepare_data(config: DataConfig, *, seed: int) -> PreparedData:
    """Load the configured files, validate them, and split what is not given."""
    if config.train is None and not (config.classes and config.test):
        raise ConfigError("data.train is not set: give a training file (--data PATH)")
    if config.train is None:
        # a model trained elsewhere, audited without its training data: its classes are the model's
        names = list(config.classes)
        train_all = LabelledTexts(file="(no training data)", texts=[], labels=[], rows=np.zeros(0, dtype=np.int64))
        hashes, rejected = {}, []
    else:
        train_all = load_labelled(config.train, config, known_labels=config.classes)
        if len(train_all) == 0:
            raise DataError("no usable rows after validation", file=str(config.train))
        train_all = drop_rare_classes(train_all, config)
        names = list(config.classes) if config.classes else label_order(train_all.labels)
        hashes = {str(config.train): train_all.source_sha256 or file_sha256(config.train)}
        rejected = list(train_all.rejected)
    if len(names) < 2:
        raise DataError(
            f"needs at least two classes, found {names}", file=str(config.train), column=config.label_column
        )

    loaded: dict[str, LabelledTexts] = {}
    for role in ("validation", "test"):
        path = getattr(config, role)
        if path is not None:
            loaded[role] = load_labelled(path, config, known_labels=names)
            hashes[str(path)] = loaded[role].source_sha256 or file_sha256(path)
            rejected += loaded[role].rejected

    split_seed = config.split.seed if config.split.seed is not None else seed
    want_val = "validation" not in loaded
    want_test = "test" not in loaded
    train_idx, val_idx, test_idx = stratified_split(
        train_all.labels,
        validation=config.split.validation if want_val else 0.0,
        test=config.split.test if want_test else 0.0,
        seed=split_seed,
    ) if len(train_all) else (np.zeros(0, dtype=np.int64),) * 3
    holdout = None
    if config.split.holdout > 0:
        # carved from what training would get, after validation and test: those splits stay as they were
        labels = [train_all.labels[i] for i in train_idx]
        keep, held, _ = stratified_split(labels, validation=config.split.holdout, test=0.0, seed=split_seed + 1)
        holdout = train_all.subset(train_idx[held])
        train_idx = train_idx[keep]
    train = train_all.subset(train_idx)
    for path in config.extra_train:
        extra = load_labelled(path, config, known_labels=names)
        hashes[str(path)] = extra.source_sha256 or file_sha256(path)
        rejected += extra.rejected
        train = train.joined(extra)
        train_all.rows_in += extra.rows_in  # read rows add up with the rejections
    validation = loaded.get("validation") or train_all.subset(val_idx)
    test = loaded.get("test") or train_all.subset(test_idx)
    if len(validation) == 0 and config.split.validation > 0 and config.train is not None:
        raise DataError(
            "validation split is empty: give data.validation or raise data.split.validation",
            file=str(config.train),
        )
    rows_read = train_all.rows_in + sum(part.rows_in for part in loaded.values())
    return PreparedData(train, validation, test, names, hashes, rejected, rows_read, holdout)


def apply_length_policies(data: PreparedData, tokenizer, config: DataConfig) -> dict[str, EncodedTexts]:
    """Apply ``on_problem.too_long`` to every split of ``data`` in place; returns each split's kept encoding.

    Dropped rows join ``data.rejected``, so the counts still add up. Training
    and every audit apply it the same way, so they judge the same rows. An
    encoding's ``truncated`` counts the texts cut (none under ``drop``).
    """
    from trustfm.data.batching import encode_texts

    encodings = {}
    for role, part in data.parts().items():
        encoded = encode_texts(tokenizer, part.texts, config.max_length)
        kept, encodings[role], dropped = apply_length_policy(part, encoded, config.on_problem.too_long,
                                                             config.text_column)
        setattr(data, role, kept)
        data.rejected.extend(dropped)
    return encodings


def apply_length_policy(
    part: LabelledTexts, encoded: EncodedTexts, policy: str, column: str
) -> tuple[LabelledTexts, EncodedTexts, list[Rejection]]:
    """Act on texts longer than ``encoded.max_length`` tokens.

    ``truncate`` keeps them cut (the count is logged), ``error`` stops at the
    first, ``drop`` removes them and returns their rejections.
    """
    over = np.flatnonzero(encoded.truncated)
    if len(over) == 0 or policy == "truncate":
        if len(over):
            log.info("%s: %d texts truncated to %d tokens", part.file, len(over), encoded.max_length)
        return part, encoded, []
    if policy == "error":
        raise DataError(
            f"text longer than {encoded.max_length} tokens (data.on_problem.too_long: truncate or drop)",
            file=part.file,
            row=int(part.rows[over[0]]),
            column=column,
        )
    keep = np.flatnonzero(~encoded.truncated)
    rejections = [
        Rejection(part.file, int(part.rows[i]), column, "too_long", f"longer than {encoded.max_length} tokens")
        for i in over
    ]
    kept = EncodedTexts([encoded.input_ids[i] for i in keep], encoded.max_length, encoded.truncated[keep])
    return part.subset(keep), kept, rejections
