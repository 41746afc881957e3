"""``ServeSettings``: how ``trustfm serve`` runs, as a pydantic model (a YAML file mirrors it)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ServeSettings(BaseModel):
    """Every limit and policy of the service. Sizes in bytes or characters; times in milliseconds unless named."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)
    # micro-batching across concurrent requests: a batch closes at max_batch_texts texts, max_batch_tokens
    # (texts x longest text, the padded size the model computes) or max_wait_ms after its first text
    max_batch_texts: int = Field(64, ge=1)
    max_batch_tokens: int = Field(8192, ge=16)
    max_wait_ms: float = Field(5.0, ge=0)
    max_queue_texts: int = Field(4096, ge=1)  # beyond it requests get 503 (backpressure), not an unbounded queue
    # a micro-batch runs as the forward passes that cost least in padded tokens plus this many tokens per pass
    # (Predictor pass_cost_tokens; 32 measured best for MiniLM on 2 CPU cores); None: one pass per batch
    pass_cost_tokens: float | None = Field(32.0, ge=0)
    # what runs the model: "auto" exports a torch model to ONNX Runtime at start-up (checked against torch, and
    # falls back to torch with a warning if the export fails or differs), "onnx" requires that export, "torch"
    # serves the weights as trained. A run that is already an ONNX graph (a compressed child) runs on ONNX Runtime
    backend: Literal["auto", "onnx", "torch"] = "auto"
    # request limits: beyond them a 413 (or truncation of over-long texts, when too_long is truncate)
    max_body_bytes: int = Field(1_000_000, ge=1024)
    max_texts_per_request: int = Field(256, ge=1)
    max_chars_per_text: int = Field(10_000, ge=1)
    too_long: Literal["reject", "truncate"] = "reject"
    # the answers: full probabilities, rounded to `digits`, or the top label only (extraction defence)
    disclosure: Literal["full", "rounded", "top1"] = "full"
    digits: int = Field(2, ge=0, le=6)
    # authentication: keys file (hashes only); per-key requests per minute (token bucket) and total texts budget
    keys_file: Path | None = None  # default RUN_DIR/serving/keys.json
    auth: bool = True
    rate_limit_per_minute: int = Field(600, ge=1)
    # model-extraction defences: texts one key may send over the service's life (None: no cap), and the alert on a
    # key whose traffic looks like extraction (over alert_texts texts in alert_window_s seconds, nearly all distinct)
    key_query_budget: int | None = Field(None, ge=1)
    # replicas: a PostgreSQL URL (postgresql+psycopg://...) where every replica keeps the API keys, rate limits,
    # query budgets and the extraction watch, so they hold for the service as a whole; a key created or revoked
    # there is seen by every replica within keys_refresh_s seconds. None: the keys file and this process's memory
    state_url: str | None = None
    keys_refresh_s: float = Field(2.0, gt=0, le=300)
    alert_texts: int = Field(2000, ge=10)
    alert_window_s: float = Field(600.0, gt=0)
    # request log: SQLAlchemy URL (default: SQLite RUN_DIR/serving/requests.db); texts redacted, hashed or not kept
    log_url: str | None = None
    log_text: Literal["redacted", "hash", "none"] = "redacted"
    # redaction runs in batches behind the answers; beyond this many waiting texts, new ones keep their hash only
    log_redact_backlog_texts: int = Field(4096, ge=0)
    rules: Path | None = None  # output rules applied to every answer
    require_signed_report: bool = True  # refuse to start unless the model matches the run's signed report
    # refuse to start a run whose release gate (results/gate.json) failed, naming the failed rules; True serves it
    # anyway, logged at start-up and shown in /v1/model (gate.overridden) and /metrics (trustfm_gate_overridden)
    allow_failed_gate: bool = False
    cors_origins: list[str] = []  # CORS is off unless origins are listed


# the run-folder files the service reads (posix paths or folder prefixes): each must be as the run's signed report
# lists it, or the service refuses to start (``trustfm serve`` checks them through ``trustfm verify``)
SERVED_RUN_FILES = ("model/", "config.yaml", "run.json", "results/gate.json", "monitoring/reference.json",
                    "monitoring/reference.npz")


def open_key_store(run_dir: Path, *, keys_file: Path | None = None, state_url: str | None = None,
                   refresh_s: float = 2.0):
    """The service's API keys: shared in the database at ``state_url`` when given, else the keys file
    (``keys_file``, default ``RUN_DIR/serving/keys.json``)."""
    from trustfm.serve.keys import DatabaseKeyStore, KeyStore

    if state_url is not None:
        return DatabaseKeyStore(state_url, refresh_s=refresh_s)
    return KeyStore(keys_file or run_dir / "serving" / "keys.json")


def default_paths(run_dir: Path, settings: ServeSettings) -> tuple[Path, str]:
    """The keys file and the request-log URL, with the run folder's defaults filled in."""
    keys = settings.keys_file or run_dir / "serving" / "keys.json"
    url = settings.log_url or f"sqlite:///{(run_dir / 'serving' / 'requests.db').resolve()}"
    return keys, url
