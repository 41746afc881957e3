"""``retrain``: a new run from a run's config plus its production answers that got feedback labels.

The feedback rows are written as a labelled file in the run's own column names (the redacted texts the log
keeps, their true labels, the request's group where the config has one group column) and joined to the training
rows through ``data.extra_train``, after the split: validation and test stay as they were, so the new run is
judged on the same rows as its parent. ``data.train`` is still the parent's file, so a DP retrain reserves its
epsilon against that dataset's budget in the privacy ledger, and is refused before its first step past it.

Feedback that repeats a validation or test row (exactly, or equal after
:func:`~trustfm.data.validate.normalise_text`) is left out and counted: training on it would teach the new run
the rows it is judged on, and its test accuracy would rise for no reason.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from trustfm.data.validate import normalise_text
from trustfm.errors import ConfigError

MIN_FEEDBACK = 20


class FeedbackData(BaseModel):
    """What retraining adds: ``rows`` labelled answers written to ``file``; ``skipped`` answers whose text the log
    does not keep (hash or none policy, or redaction pending) and could not be used; ``evaluation_duplicates``
    answers left out because their text repeats a validation or test row of the run."""

    file: str
    rows: int
    skipped: int
    evaluation_duplicates: int = 0
    by_label: dict[str, int]
    log: str


def write_feedback_data(run_dir: str | Path, *, log_url: str, output: str | Path) -> FeedbackData:
    """Write the feedback-labelled answers of ``run_dir``'s model in ``log_url`` to the CSV ``output``."""
    from trustfm.config import load_config
    from trustfm.models.loading import model_fingerprint, model_weight_hashes
    from trustfm.monitor.logreader import read_log
    from trustfm.runs import RunRecord, existing_run
    from trustfm.serve.requestlog import RequestLog

    paths = existing_run(run_dir)
    config = load_config(paths.config)
    names = RunRecord.load(paths).label_names or []
    logged, _ = read_log(log_url, model_sha256=model_fingerprint(model_weight_hashes(paths.model)),
                         label_names=names)
    labelled = np.nonzero(logged.true_label >= 0)[0]
    kept = [i for i in labelled if logged.texts[i]]
    judged_on = evaluation_texts(run_dir)
    usable = [i for i in kept if normalise_text(logged.texts[i]) not in judged_on]
    if len(usable) < MIN_FEEDBACK:
        raise ConfigError(f"{RequestLog.masked(log_url)}: {len(usable)} feedback-labelled answers with a kept text; "
                          f"retraining needs at least {MIN_FEEDBACK} (the log must keep redacted texts: "
                          "log_text redacted)" + (f"; {len(kept) - len(usable)} more repeat validation or test "
                                                  "rows and are left out" if len(kept) > len(usable) else ""))
    data = config.data
    columns = [data.text_column, data.label_column, *([data.id_column] if data.id_column else []),
               *data.group_columns]
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for i in usable:
            row = [logged.texts[i], names[logged.true_label[i]]]
            if data.id_column:
                row.append(f"feedback-{logged.request_ids[i]}-{i}")
            group = logged.groups[i] if len(data.group_columns) == 1 and logged.groups[i] else "unknown"
            row += [group] * len(data.group_columns)
            writer.writerow(row)
    counts = np.bincount(logged.true_label[usable], minlength=len(names))
    return FeedbackData(file=str(output), rows=len(usable), skipped=len(labelled) - len(kept),
                        evaluation_duplicates=len(kept) - len(usable), by_label={n: int(c) for n, c in zip(names, counts)}, log=RequestLog.masked(log_url))


def evaluation_texts(run_dir: str | Path) -> set[str]:
    """The run's validation and test texts (as it prepared them), each normalised with
    :func:`~trustfm.data.validate.normalise_text`."""
    from trustfm.audit.context import AuditContext

    data = AuditContext(run_dir).data
    return {normalise_text(t) for part in (data.validation, data.test) for t in part.texts}


def record_retraining(run_dir: str | Path, *, parent: str | Path, feedback: FeedbackData) -> None:
    """Add the ``retraining`` lineage block (parent run, feedback file and counts) to the new run's run.json."""
    from trustfm.runs import RunRecord, existing_run

    paths = existing_run(run_dir)
    record = RunRecord.load(paths)
    data = record.model_dump(mode="json", exclude_none=True)
    data["retraining"] = {"parent": str(existing_run(parent).root.resolve()), **feedback.model_dump(mode="json")}
    RunRecord.model_validate(data).save(paths)
