"""A classifier reachable only through an HTTP API, answering through the Predictor like any model.

Three request and answer shapes (``EndpointSpec.protocol``):

- ``trustfm``: another trustfm service: ``POST {url}/v1/predict {"texts": [...]}``, probabilities per class in
  ``predictions[i].probabilities``;
- ``kserve-v2``: the KServe / Open Inference Protocol v2: ``POST {url}/v2/models/{model}/infer`` with one BYTES
  input tensor of the texts; the output tensor (``output``, else the first) holds the probabilities, (n, k);
- ``template``: any JSON API: ``request`` is a JSON template in which the string ``"{{texts}}"`` stands for the
  list of texts (or ``"{{text}}"`` for one text per request), and ``probabilities`` is a path into the answer
  (``results[*].scores``, ``outputs[0].data``): per text, a list in class order or a mapping class -> probability.

Authentication: a header (``auth_header``, default ``Authorization``) whose value (``auth_scheme`` and the token)
is read from the environment variable ``auth_env`` at each request: the secret is never stored in the run folder,
in logs or in errors. Requests go out ``batch_size`` texts at a time, at most ``concurrency`` at once, retried
with exponential back-off on connection errors, 429 and 5xx; ``max_requests`` bounds the requests one process
sends (beyond it, a ConfigError). Answers are cached by the text's sha256 for the life of the process, so audits
sharing one Predictor never send a text twice (``requests``, ``texts_sent`` and ``cache_hits`` count it).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from typing import Literal, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from trustfm.errors import ConfigError

ENDPOINT_FILE = "endpoint.json"  # the spec in the run's model folder (no secret: the token stays in the environment)


class EndpointRefused(ConfigError):
    """The endpoint kept answering 429 (too many requests, or a query budget spent) after every retry."""


class EndpointSpec(BaseModel):
    """How to ask a remote classifier for probabilities (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    url: str
    protocol: Literal["trustfm", "kserve-v2", "template"] = "trustfm"
    classes: list[str] = []  # output order; the trustfm protocol reads them from GET /v1/model when empty
    model: str | None = None  # kserve-v2: the model name in the path
    input_name: str = "text"  # kserve-v2: the input tensor's name
    output_name: str | None = None  # kserve-v2: the output tensor holding probabilities (default: the first)
    request: dict | list | None = None  # template: the JSON body, "{{texts}}" or "{{text}}" standing for the input
    path: str = ""  # template: appended to url
    probabilities: str | None = None  # template: where the probabilities are in the answer
    auth_env: str | None = None  # the environment variable holding the token
    auth_header: str = "Authorization"
    auth_scheme: str | None = "Bearer"
    batch_size: int = Field(32, ge=1, le=1024)
    concurrency: int = Field(4, ge=1, le=64)
    retries: int = Field(3, ge=0, le=10)
    backoff_s: float = Field(0.5, ge=0)
    timeout_s: float = Field(30.0, gt=0)
    max_requests: int | None = Field(None, ge=1)


def _read_path(document, path: str):
    """``document`` at ``path``: dotted keys, ``[i]`` indices and ``[*]`` (every element)."""
    parts = [p for p in re.split(r"\.|(\[[^\]]*\])", path) if p]
    values = [document]
    for part in parts:
        nxt = []
        for value in values:
            if part == "[*]":
                nxt.extend(value)
            elif part.startswith("["):
                nxt.append(value[int(part[1:-1])])
            else:
                nxt.append(value[part])
        values = nxt
    return values if "[*]" in parts else values[0]


def _fill(template, texts: list[str]):
    """The request template with ``"{{texts}}"`` replaced by the texts and ``"{{text}}"`` by the one text."""
    if template == "{{texts}}":
        return texts
    if template == "{{text}}":
        return texts[0]
    if isinstance(template, dict):
        return {k: _fill(v, texts) for k, v in template.items()}
    if isinstance(template, list):
        return [_fill(v, texts) for v in template]
    return template


class EndpointClient:
    """Probabilities of texts from a remote classifier (thread-safe; see the module docstring)."""

    def __init__(self, spec: EndpointSpec):
        self.spec = spec
        self.requests = 0
        self.texts_sent = 0
        self.cache_hits = 0
        self._cache: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        if spec.protocol == "template" and (spec.request is None or spec.probabilities is None):
            raise ConfigError("a template endpoint needs request (the JSON body, with \"{{texts}}\" or \"{{text}}\") "
                              "and probabilities (where they are in the answer)")
        if spec.protocol == "kserve-v2" and not spec.model:
            raise ConfigError("a kserve-v2 endpoint needs model: the model name in /v2/models/{model}/infer")
        if spec.auth_env and not os.environ.get(spec.auth_env):
            raise ConfigError(f"the endpoint's token is read from ${spec.auth_env}, which is not set")
        if not spec.classes:
            if spec.protocol != "trustfm":
                raise ConfigError(f"a {spec.protocol} endpoint needs its classes in output order (--classes a,b,...)")
            self.spec = spec.model_copy(update={"classes": self._model_classes()})

    # -- HTTP ----------------------------------------------------------------------------------------------------
    def _headers(self) -> dict:
        headers = {"content-type": "application/json"}
        if self.spec.auth_env:
            token = os.environ.get(self.spec.auth_env, "")
            headers[self.spec.auth_header] = f"{self.spec.auth_scheme} {token}" if self.spec.auth_scheme else token
        return headers

    def _call(self, method: str, url: str, body=None):
        """One request with retries; the answer's JSON. Errors name the host and the status, never the token."""
        import httpx

        from urllib.parse import urlsplit

        host = urlsplit(url).netloc or url
        reason = ""
        for attempt in range(self.spec.retries + 1):
            if attempt:
                time.sleep(self.spec.backoff_s * 2 ** (attempt - 1))
            with self._lock:
                if self.spec.max_requests is not None and self.requests >= self.spec.max_requests:
                    raise ConfigError(f"endpoint {host}: the request budget of {self.spec.max_requests} is spent "
                                      "(raise --max-requests, or audit fewer texts)")
                self.requests += 1
            try:
                response = httpx.request(method, url, json=body, headers=self._headers(), timeout=self.spec.timeout_s)
            except httpx.HTTPError as exc:
                reason = type(exc).__name__
                continue
            if response.status_code == 429 or response.status_code >= 500:
                reason = f"HTTP {response.status_code}"
                continue
            if not response.is_success:
                raise ConfigError(f"endpoint {host} refused the request: HTTP {response.status_code}")
            try:
                return response.json()
            except json.JSONDecodeError:
                raise ConfigError(f"endpoint {host} answered something that is not JSON") from None
        error = EndpointRefused if reason == "HTTP 429" else ConfigError
        raise error(f"endpoint {host} did not answer after {self.spec.retries + 1} tries ({reason})")

    def _model_classes(self) -> list[str]:
        info = self._call("GET", f"{self.spec.url.rstrip('/')}/v1/model")
        classes = info.get("classes") if isinstance(info, dict) else None
        if not classes:
            raise ConfigError(f"{self.spec.url}/v1/model names no classes: give --classes")
        return list(classes)

    def _ask(self, texts: list[str]) -> np.ndarray:
        """(n, k) probabilities of ``texts`` (one request; the template's one-text form: one per text)."""
        spec, base = self.spec, self.spec.url.rstrip("/")
        if spec.protocol == "trustfm":
            answer = self._call("POST", f"{base}/v1/predict", {"texts": texts})
            # a service that discloses the top label only, or rounds, leaves classes out: they count as 0
            rows = [[p["probabilities"].get(c, 0.0) for c in spec.classes] for p in answer["predictions"]]
        elif spec.protocol == "kserve-v2":
            body = {"inputs": [{"name": spec.input_name, "shape": [len(texts)], "datatype": "BYTES", "data": texts}]}
            answer = self._call("POST", f"{base}/v2/models/{spec.model}/infer", body)
            outputs = answer["outputs"]
            tensor = next((o for o in outputs if o.get("name") == spec.output_name), outputs[0])
            rows = np.asarray(tensor["data"], dtype=np.float64).reshape(len(texts), len(spec.classes)).tolist()
        else:
            if "{{text}}" in json.dumps(spec.request):
                return np.concatenate([self._template([t]) for t in texts]) if len(texts) > 1 else self._template(texts)
            return self._template(texts)
        return self._check(rows, len(texts))

    def _template(self, texts: list[str]) -> np.ndarray:
        spec = self.spec
        answer = self._call("POST", spec.url.rstrip("/") + spec.path, _fill(spec.request, texts))
        found = _read_path(answer, spec.probabilities)
        found = found if isinstance(found, list) and found and isinstance(found[0], (list, dict)) else [found]
        rows = [[row[c] for c in spec.classes] if isinstance(row, dict) else row for row in found]
        return self._check(rows, len(texts))

    def _check(self, rows, n: int) -> np.ndarray:
        try:
            proba = np.asarray(rows, dtype=np.float64)
        except (TypeError, ValueError):
            raise ConfigError(f"endpoint {self.spec.url}: the answer's probabilities are not numbers") from None
        if proba.shape != (n, len(self.spec.classes)):
            raise ConfigError(f"endpoint {self.spec.url}: {proba.shape} probabilities for {n} texts of "
                              f"{len(self.spec.classes)} classes")
        return proba

    # -- the Predictor's verb ------------------------------------------------------------------------------------
    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """(n, k) float32 probabilities, rows in input order; each distinct text is asked once per process."""
        from concurrent.futures import ThreadPoolExecutor

        keys = [hashlib.sha256(t.encode("utf-8", "surrogatepass")).hexdigest() for t in texts]
        with self._lock:
            missing = list(dict.fromkeys(k for k in keys if k not in self._cache))
            self.cache_hits += sum(1 for k in keys if k in self._cache)
        first = {k: texts[i] for i, k in reversed(list(enumerate(keys)))}
        batches = [missing[i:i + self.spec.batch_size] for i in range(0, len(missing), self.spec.batch_size)]
        with ThreadPoolExecutor(max_workers=self.spec.concurrency) as pool:
            answers = list(pool.map(lambda batch: self._ask([first[k] for k in batch]), batches))
        with self._lock:
            for batch, proba in zip(batches, answers):
                self.texts_sent += len(batch)
                self._cache.update(zip(batch, proba))
        out = np.stack([self._cache[k] for k in keys]) if keys else np.zeros((0, len(self.spec.classes)))
        return (out / out.sum(axis=1, keepdims=True).clip(1e-12)).astype(np.float32)

    def stats(self) -> dict[str, int]:
        return {"requests": self.requests, "texts_sent": self.texts_sent, "cache_hits": self.cache_hits}
