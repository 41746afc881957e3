"""Reading the serving request log (``trustfm.serve.requestlog``) back as arrays, for one model."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from trustfm.errors import ConfigError


@dataclass
class LoggedPredictions:
    """Answered texts of one model, oldest first (n rows; arrays are (n,)).

    ``received_at``: UTC datetimes; ``texts``: the redacted text (None under the hash/none policies or before
    redaction); ``chars``: raw text length; ``predicted``: the model's class id; ``abstained``/``overridden``: an
    output rule withheld or changed the answer; ``confidence``: top probability; ``ood``: 1/0, NaN without a
    detector; ``true_label``: id from feedback, -1 when none; ``groups``: the client-named group or None;
    ``probabilities``: (n, k).
    """

    received_at: list[datetime]
    request_ids: list[str]
    texts: list[str | None]
    chars: np.ndarray
    predicted: np.ndarray
    abstained: np.ndarray
    overridden: np.ndarray
    confidence: np.ndarray
    ood: np.ndarray
    true_label: np.ndarray
    groups: list[str | None]
    probabilities: np.ndarray

    def __len__(self) -> int:
        return len(self.request_ids)

    def take(self, rows) -> "LoggedPredictions":
        rows = np.asarray(rows, dtype=np.int64)
        return LoggedPredictions(
            received_at=[self.received_at[i] for i in rows], request_ids=[self.request_ids[i] for i in rows],
            texts=[self.texts[i] for i in rows], chars=self.chars[rows], predicted=self.predicted[rows],
            abstained=self.abstained[rows], overridden=self.overridden[rows], confidence=self.confidence[rows],
            ood=self.ood[rows], true_label=self.true_label[rows], groups=[self.groups[i] for i in rows],
            probabilities=self.probabilities[rows])


def _utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes (stored in UTC by the service); PostgreSQL aware ones
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def read_log(url: str, *, model_sha256: str, label_names: list[str], since: datetime | None = None
             ) -> tuple[LoggedPredictions, dict[str, int]]:
    """Answers of model ``model_sha256`` in the log at ``url`` received after ``since`` (all when None), and the
    number of rows of other models by their hash (a redeployment mixes them; they are never judged as this one).

    Raises ConfigError when the log cannot be opened, or holds answers of other models only.
    """
    from sqlalchemy import and_, func, select

    from trustfm.serve.requestlog import RequestLog

    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        raise ConfigError(f"no request log at {url.removeprefix('sqlite:///')}: serve the run first, or give --log")
    log = RequestLog(url, text_policy="none")  # reads only; the policy matters to writers
    try:
        r, p, f = log.requests, log.predictions, log.feedback
        where = [r.c.endpoint == "predict"]
        if since is not None:
            where.append(r.c.received_at > since)
        with log.engine.connect() as connection:
            others = {h or "unknown": n for h, n in connection.execute(
                select(r.c.model_sha256, func.count()).select_from(p.join(r, p.c.request_id == r.c.request_id))
                .where(and_(*where, r.c.model_sha256 != model_sha256)).group_by(r.c.model_sha256))}
            query = (select(r.c.received_at, p.c.request_id, p.c.text, p.c.text_chars, p.c.label, p.c.model_label,
                            p.c.confidence, p.c.probabilities, p.c.ood, p.c.rule, p.c.group_value, f.c.true_label)
                     .select_from(p.join(r, p.c.request_id == r.c.request_id).outerjoin(
                         f, and_(f.c.request_id == p.c.request_id, f.c.position == p.c.position)))
                     .where(and_(*where, r.c.model_sha256 == model_sha256))
                     .order_by(r.c.received_at, p.c.request_id, p.c.position))
            rows = connection.execute(query).all()
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - a database error is one line naming the log, never a traceback
        raise ConfigError(f"request log {log.safe_url}: cannot read it ({type(exc).__name__})") from None
    finally:
        log.close()
    if not rows and others:
        shown = ", ".join(f"{h[:12]}… ({n} answers)" for h, n in sorted(others.items()))
        raise ConfigError(f"request log {log.safe_url} holds answers of another model ({shown}), none of this "
                          f"run's model {model_sha256[:12]}…: monitor the run that served them, or point --log at "
                          "this model's log")
    index = {name: i for i, name in enumerate(label_names)}
    k = len(label_names)
    probabilities = np.full((len(rows), k), np.nan)
    for i, row in enumerate(rows):
        if isinstance(row.probabilities, dict) and len(row.probabilities) == k:
            probabilities[i] = [row.probabilities.get(name, np.nan) for name in label_names]
    logged = LoggedPredictions(
        received_at=[_utc(row.received_at) for row in rows], request_ids=[row.request_id for row in rows],
        texts=[row.text for row in rows], chars=np.asarray([row.text_chars for row in rows], dtype=np.float64),
        predicted=np.asarray([index.get(row.model_label, -1) for row in rows], dtype=np.int64),
        abstained=np.asarray([row.rule is not None and row.label is None for row in rows], dtype=bool),
        overridden=np.asarray([row.rule is not None and row.label is not None and row.label != row.model_label
                               for row in rows], dtype=bool),
        confidence=np.asarray([np.nan if row.confidence is None else row.confidence for row in rows], dtype=float),
        ood=np.asarray([np.nan if row.ood is None else float(row.ood) for row in rows], dtype=float),
        true_label=np.asarray([index.get(row.true_label, -1) if row.true_label else -1 for row in rows],
                              dtype=np.int64),
        groups=[row.group_value for row in rows], probabilities=probabilities)
    return logged, others
