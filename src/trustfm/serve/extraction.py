"""``trustfm audit extraction``: steal the served model, with and without the service's defences, and measure it.

An attacker with an API key and a budget of queries sends public or unlabelled texts to the running service
(real HTTP on loopback), then trains a surrogate on the answers: TF-IDF word and bigram features with a
logistic regression, trained on the returned probabilities where the service discloses them (each text weighted
into every class by its probability) and on the labels alone otherwise. The surrogate is judged on the run's
evaluation split: agreement with the model's own predictions (what the attacker wants), and accuracy against the
gold labels, each with its bootstrap interval, at each budget.

Defences measured, one service per defence: ``full`` probabilities (none), ``rounded`` (one decimal), ``top1``
(the label only), and ``budget`` (a per-key query budget: the attacker is refused past it). Whether the service's
extraction alert fired is recorded for each.

A run imported from an endpoint (``trustfm import --endpoint``) is attacked where it lives, with the endpoint's own
token, as one defence: ``as-served`` (whatever the endpoint discloses and refuses; trustfm cannot switch its
defences). A 429 that outlasts the retries counts as a refusal: the rest of the attacker's texts go unanswered.
Whether the endpoint's owner was alerted is not observable from outside (``None``).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
from pydantic import BaseModel

from trustfm.errors import ConfigError
from trustfm.results import Interval, Result

DEFENCES = ("full", "rounded", "top1", "budget")
AS_SERVED = "as-served"  # the one defence of a model behind a foreign endpoint: its own
LOOPBACK_TARGET = "the run's model, served by trustfm on loopback (one service per defence)"


class ExtractionPoint(BaseModel):
    defence: str  # full | rounded | top1 | budget | as-served
    budget: int  # queries the attacker meant to send
    answered: int  # queries the service answered (fewer under a query budget)
    agreement: Interval  # surrogate vs model predictions on the evaluation split, in [0, 1]
    surrogate_accuracy: Interval  # surrogate vs gold labels


class ExtractionResult(Result):
    """``results/extraction.json``: surrogate agreement against queries, per defence."""

    kind: Literal["extraction"] = "extraction"
    title = "Model extraction"
    attacker_texts: str
    evaluated_on: str
    model_accuracy: float  # the model itself on the same rows, for scale
    surrogate: str
    points: list[ExtractionPoint]
    # defence -> whether the service's extraction alert fired during the attack; None: not observable (an endpoint)
    alerts: dict[str, bool | None]
    key_query_budget: int | None  # the budget defence's cap; None when no budget defence was set up
    target: str = LOOPBACK_TARGET
    requests: int | None = None  # HTTP requests the attack sent to a foreign endpoint

    def metrics(self) -> dict[str, float]:
        """``<defence>.<budget>.agreement`` and ``.surrogate_accuracy``, and ``<defence>.alert``."""
        out: dict[str, float] = {}
        for p in self.points:
            for key in ("agreement", "surrogate_accuracy"):
                interval = getattr(p, key)
                out[f"{p.defence}.{p.budget}.{key}"] = interval.value
                if interval.low is not None:
                    out[f"{p.defence}.{p.budget}.{key}.low"] = interval.low
                    out[f"{p.defence}.{p.budget}.{key}.high"] = interval.high
        out.update({f"{d}.alert": float(v) for d, v in self.alerts.items() if v is not None})
        return out


class _LoopbackService:
    """The real service (FastAPI on uvicorn) in a background thread on a free loopback port."""

    def __init__(self, run_dir: Path, settings):
        import socket

        import uvicorn

        from trustfm.serve.app import create_app

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        config = uvicorn.Config(create_app(run_dir, settings), host="127.0.0.1", port=self.port, log_level="error",
                                access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        for _ in range(600):
            if self.server.started:
                return self
            time.sleep(0.05)
        raise ConfigError("the service for the extraction audit did not start")

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=30)


def _attack(url: str, key: str, texts: Sequence[str], *, batch: int = 10) -> list[dict | None]:
    """Send ``texts`` in batches; the answers, None for texts the service refused (budget spent)."""
    import httpx

    answers: list[dict | None] = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
        for start in range(0, len(texts), batch):
            chunk = list(texts[start:start + batch])
            response = client.post("/v1/predict", json={"texts": chunk})
            if response.status_code == 429:
                answers += [None] * (len(texts) - start)
                break
            response.raise_for_status()
            answers += response.json()["predictions"]
    return answers


def _attack_endpoint(spec, texts: Sequence[str], *, batch: int = 10) -> tuple[list[dict | None], int]:
    """Send ``texts`` to a foreign endpoint ``batch`` at a time through a client of its own (nothing cached from
    the audit's predictions); the answers, None from the first refusal on, and the requests sent."""
    from trustfm.models.endpoint import EndpointClient, EndpointRefused

    client = EndpointClient(spec)
    answers: list[dict | None] = []
    for start in range(0, len(texts), batch):
        try:
            proba = client.predict_proba(list(texts[start:start + batch]))
        except EndpointRefused:
            answers += [None] * (len(texts) - start)
            break
        answers += [{"probabilities": dict(zip(client.spec.classes, map(float, row)))} for row in proba]
    return answers, client.requests


def fit_surrogate(texts: Sequence[str], answers: Sequence[dict], label_names: Sequence[str], *, seed: int):
    """TF-IDF (words and bigrams) + logistic regression on the answers: soft labels when probabilities are
    disclosed (a text counts in each class with its probability), the label alone otherwise."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    rows, targets, weights = [], [], []
    for text, answer in zip(texts, answers):
        probabilities = answer["probabilities"]
        total = sum(probabilities.values()) or 1.0
        for name, p in probabilities.items():
            if p > 0:
                rows.append(text)
                targets.append(label_names.index(name))
                weights.append(p / total)
    model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True),
                          LogisticRegression(max_iter=2000, C=10.0, random_state=seed))
    if len(set(targets)) < 2:
        return None  # every answer the same class: nothing to separate
    model.fit(rows, targets, logisticregression__sample_weight=np.asarray(weights))
    return model


def _attack_loopback(run_dir: Path, queries: Sequence[str], defences: Sequence[str], *, cap: int,
                     alert_texts: int) -> tuple[dict[str, list[dict | None]], dict[str, bool]]:
    """Serve ``run_dir`` once per defence on loopback and attack it with ``queries``: the answers per defence
    (None where refused) and whether the service's extraction alert fired."""
    import tempfile

    import httpx

    from trustfm.serve.keys import KeyStore
    from trustfm.serve.settings import ServeSettings

    answers, alerts = {}, {}
    with tempfile.TemporaryDirectory(prefix="trustfm-extraction-") as work:
        for defence in defences:
            keys = KeyStore(Path(work) / f"keys-{defence}.json")
            key = keys.create("attacker")
            settings = ServeSettings(
                disclosure={"rounded": "rounded", "top1": "top1"}.get(defence, "full"), digits=1,
                keys_file=keys.path, log_url=f"sqlite:///{Path(work) / f'log-{defence}.db'}", log_text="none",
                rate_limit_per_minute=10 ** 9, require_signed_report=False,
                allow_failed_gate=True,  # an audit of the model's exposure, not a release
                key_query_budget=cap if defence == "budget" else None,
                alert_texts=alert_texts)
            with _LoopbackService(run_dir, settings) as service:
                url = f"http://127.0.0.1:{service.port}"
                answers[defence] = _attack(url, key, queries)
                metrics_text = httpx.get(f"{url}/metrics", timeout=30).text
            alerts[defence] = any(line.startswith("trustfm_extraction_alerts_total") and float(line.split()[-1]) > 0
                                  for line in metrics_text.splitlines())
    return answers, alerts


def audit_extraction_run(run_dir: str | Path, *, attacker_texts: str | Path, text_column: str | None = None,
                         budgets: Sequence[int] = (100, 300, 1000), defences: Sequence[str] | None = None,
                         key_query_budget: int | None = None, alert_texts: int = 2000, eval_rows: int = 1000,
                         show_progress: bool = False) -> ExtractionResult:
    """Attack the served model of ``run_dir`` with ``attacker_texts`` at each budget, under each defence (default:
    all four; ``as-served`` only for a model behind an endpoint); writes ``results/extraction.json``.
    ``key_query_budget`` (default: the smallest budget) caps the ``budget`` defence; ``alert_texts`` is the
    service's extraction-alert threshold (its default: 2,000 texts in 10 minutes)."""
    from trustfm.audit.context import AuditContext
    from trustfm.data.io import read_table

    budgets = sorted({int(b) for b in budgets})
    if not budgets or budgets[0] < 10:
        raise ConfigError("--budgets: give query budgets of at least 10")
    ctx = AuditContext(run_dir, show_progress=show_progress)
    remote = ctx.predictor.remote if ctx.predictor.black_box else None
    if remote is not None:
        defences = list(defences or [AS_SERVED])
        if defences != [AS_SERVED]:
            raise ConfigError(f"this run's model is behind an endpoint and is attacked as it is served "
                              f"(--defences {AS_SERVED}): trustfm cannot switch that endpoint's defences")
    else:
        defences = list(defences or DEFENCES)
        unknown = [d for d in defences if d not in DEFENCES]
        if unknown:
            raise ConfigError(f"unknown defences {unknown}; have {list(DEFENCES)}"
                              + (f" ({AS_SERVED} is for a run imported from an endpoint)" if AS_SERVED in unknown
                                 else ""))
    frame = read_table(Path(attacker_texts))
    column = text_column or ctx.config.data.text_column
    if column not in frame.columns:
        raise ConfigError(f"--attacker-texts {attacker_texts}: no text column '{column}' "
                          f"(columns: {', '.join(map(str, frame.columns))})")
    pool = [t for t in frame[column].astype(str).tolist() if t.strip()]
    if len(pool) < budgets[-1]:
        raise ConfigError(f"--attacker-texts {attacker_texts} has {len(pool)} texts; the largest budget needs "
                          f"{budgets[-1]}")
    rng = np.random.default_rng(ctx.config.seed)
    queries = [pool[i] for i in rng.permutation(len(pool))[:budgets[-1]]]
    part = ctx.eval_part
    rows = np.sort(rng.permutation(len(part))[:eval_rows])
    eval_texts = [part.texts[i] for i in rows]
    gold = ctx.data.label_ids(part)[rows]
    names = ctx.predictor.label_names
    model_pred = ctx.predictor.predict_proba(eval_texts).argmax(1)
    if remote is not None:
        attack, requests = _attack_endpoint(remote.spec, queries)
        answers, alerts, cap = {AS_SERVED: attack}, {AS_SERVED: None}, None
        target = f"the model behind {remote.spec.url} ({remote.spec.protocol} protocol), attacked as it is served"
    else:
        cap, requests = key_query_budget or budgets[0], None
        answers, alerts = _attack_loopback(ctx.paths.root, queries, defences, cap=cap, alert_texts=alert_texts)
        target = LOOPBACK_TARGET
    points = []
    for defence in defences:
        for budget in budgets:
            answered = [(t, a) for t, a in zip(queries[:budget], answers[defence][:budget]) if a is not None]
            surrogate = fit_surrogate([t for t, _ in answered], [a for _, a in answered], names,
                                      seed=ctx.config.seed) if answered else None
            predicted = surrogate.predict(eval_texts) if surrogate is not None else np.full(len(eval_texts), -1)
            points.append(ExtractionPoint(
                defence=defence, budget=budget, answered=len(answered),
                agreement=ctx.bootstrap.mean((predicted == model_pred).astype(float)),
                surrogate_accuracy=ctx.bootstrap.mean((predicted == gold).astype(float))))
    result = ExtractionResult(
        attacker_texts=f"{attacker_texts} ({len(pool)} texts, column '{column}')",
        evaluated_on=f"{part.file} ({ctx.eval_split} split, {len(rows)} rows)",
        model_accuracy=float((model_pred == gold).mean()), surrogate="TF-IDF words+bigrams, logistic regression",
        points=points, alerts=alerts, key_query_budget=cap if "budget" in defences else None, target=target,
        requests=requests)
    ctx.save("extraction", result)
    return result
