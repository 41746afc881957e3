"""Canaries for the one-run privacy audit (Steinke, Nasr & Jagielski, "Privacy Auditing with One (1) Training
Run", NeurIPS 2023), inserted while training; ``trustfm audit privacy-canaries`` scores them afterwards.

``privacy.audit.canaries: m`` draws ``m`` canaries of each kind asked for:

- **input** canaries: texts of ``words`` random vocabulary words with a random label, trained on as rows;
- **gradient** canaries (DP-SGD runs): a gradient of the clipping norm in a random direction of the trainable
  weights, which joins DP-SGD's clipped sum, sampled each step with the rows' sampling rate, exactly as a row
  whose clipped gradient it were. The audit reads how far the weights moved along that direction. The direction
  is spread over every weight rather than put on one (the paper's "Dirac" canary) because Adam rescales each
  weight's step by its own gradient history: on one weight, a canary's push is lost among the noise's
  (ROC-AUC 0.64 with the noise cut a hundredfold, on the tiny model of the tests), while along a direction
  the pushes of many weights add up.

Each canary is trained on with probability 1/2, drawn from OS randomness (never from the run's seed, which is in
the config). The canaries themselves are public (``canaries/canaries.json``: texts, labels, weights and their
starting values); which of them were included is sealed (``canaries/inclusion.sealed``, AES-256-GCM) under a key
kept outside the run folder, so that neither the run folder, the report, nor any log tells an included canary
from an excluded one until the audit has made its guesses. The number included is not hidden: it is a sum of
coins and says nothing about any one canary.

Canaries live only in the training loop: they are not in the data files, so every other audit, the evaluation
and ``trustfm verify`` never see them.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel

from trustfm.errors import ConfigError
from trustfm.fileio import write_json_atomic
from trustfm.runs import RunPaths
from trustfm.train.callbacks import Callback

FOLDER = "canaries"
PUBLIC_FILE = "canaries.json"
SEALED_FILE = "inclusion.sealed"
KEY_ENV = "TRUSTFM_CANARY_KEY_FILE"


class InputCanary(BaseModel):
    text: str
    label: str


class GradientCanary(BaseModel):
    seed: int  # torch CPU generator seed of its direction: standard normal over the flattened weights, unit length
    initial: float  # the starting weights' projection on that direction


class CanarySet(BaseModel):
    """The public half of a run's canaries (``canaries/canaries.json``); the inclusion draws are sealed apart."""

    count: int  # canaries of each kind
    kinds: list[str]
    words: int
    input: list[InputCanary] = []
    gradient: list[GradientCanary] = []
    gradient_norm: float | None = None  # the DP-SGD clipping norm each gradient canary has
    gradient_parameters: list[str] = []  # the weights the directions run over, flattened in this order
    sealed_with: str  # the key file's path (where the audit finds the key), never the key
    shared_by: str | None = None  # the study whose trials all train on these canaries (trustfm.tune.canaries)

    def run_record(self) -> dict:
        """What ``run.json`` says of the canaries (``privacy_audit``): how many, which kinds, never the draws."""
        return {"canaries": self.count, "kinds": self.kinds,
                "inclusion": f"sealed in {FOLDER}/{SEALED_FILE} until the audit"}


def canary_folder(paths: RunPaths) -> Path:
    return paths.root / FOLDER


def key_path(key_file: str | Path | None) -> Path:
    """The sealing key's file: ``privacy.audit.key_file``, else ``$TRUSTFM_CANARY_KEY_FILE``, else
    ``~/.trustfm/canary-key``."""
    chosen = key_file or os.environ.get(KEY_ENV)
    return Path(chosen).expanduser() if chosen else Path.home() / ".trustfm" / "canary-key"


def _key(path: Path, *, create: bool) -> bytes:
    from trustfm.encryption import load_key, new_key_file

    if not path.exists():
        if not create:
            raise ConfigError(f"{path}: the key that sealed this run's canary draws is not here (set "
                              f"{KEY_ENV} to where it is kept)")
        path.parent.mkdir(parents=True, exist_ok=True)
        new_key_file(path)
    return load_key(path)


def read_canaries(paths: RunPaths) -> CanarySet | None:
    """The run's public canary file, or None when the run trained without canaries."""
    path = canary_folder(paths) / PUBLIC_FILE
    if not path.exists():
        return None
    return CanarySet.model_validate_json(path.read_text(encoding="utf-8"))


def reveal_inclusion(paths: RunPaths, canaries: CanarySet) -> dict[str, np.ndarray]:
    """The sealed draws, by kind: bool (count,), True where the canary was trained on. Call it only after the
    guesses are fixed."""
    from trustfm.encryption import read_decrypted

    key = _key(Path(canaries.sealed_with), create=False)
    drawn = json.loads(read_decrypted(canary_folder(paths) / SEALED_FILE, key))
    return {kind: np.array(bits, dtype=bool) for kind, bits in drawn.items()}


def _vocabulary_words(tokenizer) -> list[str]:
    """Whole alphabetic words of at least 3 letters that the tokenizer's vocabulary holds as one token."""
    special = set(tokenizer.all_special_tokens)
    words = set()
    for token in tokenizer.get_vocab():
        if token in special:
            continue
        word = tokenizer.convert_tokens_to_string([token]).strip()
        if len(word) >= 3 and word.isalpha() and word.isascii() and not token.startswith("##"):
            words.add(word.lower())
    return sorted(words)


def draw_input_canaries(tokenizer, label_names: list[str], *, count: int, words: int) -> list[InputCanary]:
    """``count`` texts of ``words`` random vocabulary words, each with a label drawn uniformly, from OS randomness
    (never the run's seed, which is in its config)."""
    rng = np.random.default_rng(secrets.randbits(128))
    vocabulary = _vocabulary_words(tokenizer)
    if len(vocabulary) < 100:
        raise ConfigError(f"privacy.audit: the tokenizer holds {len(vocabulary)} whole words; input canaries need "
                          "at least 100 to be unlike each other")
    return [InputCanary(text=" ".join(vocabulary[i] for i in rng.integers(0, len(vocabulary), words)),
                        label=label_names[int(rng.integers(0, len(label_names)))]) for _ in range(count)]


def canary_direction(seed: int, size: int) -> torch.Tensor:
    """A gradient canary's direction: ``size`` standard normal draws from a CPU generator seeded ``seed``, scaled
    to unit length (float32)."""
    direction = torch.randn(size, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)
    return direction / direction.norm()


def flat_weights(model: torch.nn.Module, names: list[str]) -> torch.Tensor:
    """The weights ``names`` flattened into one float64 vector, in that order."""
    params = dict(model.named_parameters())
    return torch.cat([params[name].detach().reshape(-1).double() for name in names])


def projections(weights: torch.Tensor, canaries: list[GradientCanary]) -> np.ndarray:
    """Each canary direction's dot product with ``weights`` (float64), shape (len(canaries),)."""
    return np.array([float(weights @ canary_direction(c.seed, len(weights)).double()) for c in canaries])


class GradientCanaries(Callback):
    """Adds each included gradient canary to DP-SGD's gradient at the steps that sample it (rate q, like a row):
    ``clipping norm / expected batch size`` along its direction, the share a row's clipped gradient would have.
    On a fresh run, records the starting weights' projections on every canary's direction first."""

    def __init__(self, dpsgd, canaries: CanarySet, included: np.ndarray, *, save):
        self.dpsgd = dpsgd
        self.canaries = canaries
        self.included = [c for c, keep in zip(canaries.gradient, included) if keep]
        self.save = save  # writes the public canary file
        self._rng = np.random.default_rng(secrets.randbits(128))  # not the seed: the sampling stays secret
        self._params: list[torch.nn.Parameter] = []

    def on_fit_start(self, trainer) -> None:
        # after DP-SGD's own on_fit_start: its parameters are final
        self._params = self.dpsgd.parameters()
        if not self._params:
            raise ConfigError("privacy.audit: gradient canaries join DP-SGD's clipped sum, which needs "
                              "privacy.dp.clipping: bookkeeping")
        names = {id(p): name for name, p in trainer.model.named_parameters()}
        ordered = [names[id(p)] for p in self._params]
        if not self.canaries.gradient_parameters:
            self.canaries.gradient_parameters = ordered
            start = flat_weights(trainer.model, ordered)
            for canary, value in zip(self.canaries.gradient, projections(start, self.canaries.gradient)):
                canary.initial = float(value)
            self.save()
        elif self.canaries.gradient_parameters != ordered:
            raise ConfigError("privacy.audit: the resumed run trains other weights than the canaries were drawn over")

    def on_before_optimizer_step(self, trainer) -> None:
        if not self.included:
            return
        sampled = [c for c, u in zip(self.included, self._rng.random(len(self.included)))
                   if u < self.dpsgd.sample_rate]
        if not sampled:
            return
        size = sum(p.numel() for p in self._params)
        push = sum(canary_direction(c.seed, size) for c in sampled) * (
            self.dpsgd.max_grad_norm / self.dpsgd.expected_batch_size)
        offset = 0
        with torch.no_grad():
            for p in self._params:
                p.grad.view(-1).add_(push[offset:offset + p.numel()].to(p.grad.dtype))
                offset += p.numel()


def new_canary_set(audit) -> CanarySet:
    """An empty public canary set for ``privacy.audit`` (the sealing key made once, where it is kept)."""
    sealed_with = key_path(audit.key_file)
    _key(sealed_with, create=True)
    return CanarySet(count=audit.canaries, kinds=list(audit.kinds), words=audit.words, sealed_with=str(sealed_with))


def seal_draws(paths: RunPaths, canaries: CanarySet) -> dict[str, np.ndarray]:
    """Draw each canary's inclusion (a fair coin from OS randomness, per kind), seal the draws under the key and
    write the public file; the draws, bool (count,) by kind, stay in memory only."""
    from trustfm.encryption import write_encrypted

    drawn = {kind: np.array([secrets.randbits(1) == 1 for _ in range(canaries.count)]) for kind in canaries.kinds}
    folder = canary_folder(paths)
    folder.mkdir(parents=True, exist_ok=True)
    write_encrypted(folder / SEALED_FILE, json.dumps({k: v.tolist() for k, v in drawn.items()}).encode(),
                    _key(Path(canaries.sealed_with), create=False))
    save_canaries(paths, canaries)
    return drawn


def save_canaries(paths: RunPaths, canaries: CanarySet) -> None:
    write_json_atomic(canary_folder(paths) / PUBLIC_FILE, canaries.model_dump(mode="json"))


def direction_canaries(count: int) -> list[GradientCanary]:
    """``count`` canaries along distinct random directions (secret seeds), starting projections still 0."""
    seeds: set[int] = set()
    while len(seeds) < count:
        seeds.add(secrets.randbits(62))
    return [GradientCanary(seed=seed, initial=0.0) for seed in sorted(seeds)]


def insert_canaries(setup, train, audit) -> tuple[object, dict]:
    """Draw (or, on ``--resume``, read back) the run's canaries, seal the inclusion draws, and return the
    training rows with the included input canaries appended, and the draws (kept in memory only)."""
    paths = setup.paths
    existing = read_canaries(paths)
    if existing is not None and (setup.resume or existing.shared_by):  # resumed, or a search's trial
        canaries, drawn = existing, reveal_inclusion(paths, existing)
    else:
        canaries = new_canary_set(audit)
        if "input" in audit.kinds:
            canaries.input = draw_input_canaries(setup.tokenizer, setup.data.label_names, count=audit.canaries,
                                                 words=audit.words)
        drawn = seal_draws(paths, canaries)
    setup.extra["canaries"] = canaries
    if "input" not in canaries.kinds:
        return train, drawn
    from trustfm.data.validate import LabelledTexts

    included = [c for c, keep in zip(canaries.input, drawn["input"]) if keep]
    rows = LabelledTexts(file="canaries", texts=[c.text for c in included], labels=[c.label for c in included],
                         rows=np.full(len(included), -1, dtype=np.int64),
                         ids=[""] * len(included) if train.ids is not None else None)
    return train.joined(rows), drawn


def gradient_canary_callback(setup, drawn: dict) -> list[Callback]:
    """The callback that adds the included gradient canaries (none unless the run asked for them)."""
    canaries: CanarySet = setup.extra["canaries"]
    if "gradient" not in canaries.kinds:
        return []
    dpsgd = setup.extra["dpsgd"]
    if not canaries.gradient:
        canaries.gradient = direction_canaries(canaries.count)
    canaries.gradient_norm = dpsgd.max_grad_norm  # a search's trials may differ in it
    return [GradientCanaries(dpsgd, canaries, drawn["gradient"], save=lambda: save_canaries(setup.paths, canaries))]
