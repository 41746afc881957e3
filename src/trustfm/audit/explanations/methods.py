"""Token attributions with one interface, and how faithful each method is.

Every explainer has the same verb, Captum-style::

    explainer = make_explainer("integrated_gradients", model, tokenizer, max_length=128)
    scores = explainer.attribute(texts, targets)   # list of arrays, one score per token

A score is the token's contribution to the probability of ``target`` (positive
pushes towards it). Methods:

- ``integrated_gradients``: Captum ``LayerIntegratedGradients`` on the input
  embedding layer, baseline = the same text with every word piece replaced by
  ``[PAD]`` (special tokens kept), summed over the embedding dimension.
- ``occlusion``: Captum ``Occlusion`` over a per-token presence mask; an absent
  token becomes ``[MASK]`` (black-box: needs only the model's probabilities).
- ``kernel_shap``: Captum ``KernelShap`` over the same presence mask.
- ``random``: random scores, the baseline a faithful method must beat.

:func:`faithfulness` measures ERASER comprehensiveness (probability lost when
the top-k% tokens are deleted; higher is better) and sufficiency (probability
lost when only the top-k% tokens are kept; lower is better), averaged over
k in {10, 20, 50}%.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from pydantic import BaseModel

from trustfm._deps import optional_import
from trustfm.results import Interval, bootstrap_mean

METHODS = ("integrated_gradients", "occlusion", "kernel_shap", "random")
ERASER_BINS = (0.1, 0.2, 0.5)


class TokenAttribution(BaseModel):
    text: str
    tokens: list[str]
    scores: list[float]  # one per token, special tokens included (scored 0)
    method: str
    target: str
    target_probability: float
    # the text's words (as written in it) with the summed scores of their tokens: what reports and the CLI show,
    # so a byte-level BPE or SentencePiece model's explanation reads in words, not in pieces of them
    words: list[str] = []
    word_scores: list[float] = []


class _Explainer:
    """Shared plumbing: tokenise, map ids -> probabilities, special-token bookkeeping."""

    method = "base"

    def __init__(self, model, tokenizer, *, max_length: int = 128, seed: int = 0, **settings):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.seed = seed
        self.settings = settings
        self.mask_id = tokenizer.mask_token_id if tokenizer.mask_token_id is not None else tokenizer.pad_token_id

    def encode(self, text: str) -> torch.Tensor:
        ids = self.tokenizer(text, truncation=True, max_length=self.max_length)["input_ids"]
        return torch.tensor([ids], dtype=torch.long)

    def special(self, ids: torch.Tensor) -> torch.Tensor:
        specials = set(self.tokenizer.all_special_ids)
        return torch.tensor([[i in specials for i in ids[0].tolist()]])

    @torch.no_grad()
    def proba(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(ids, torch.ones_like(ids)), dim=-1)

    def attribute(self, texts: Sequence[str], targets: Sequence[int] | None = None) -> list[np.ndarray]:
        """Scores (one per token of each text) towards ``targets`` (default: the predicted class)."""
        out = []
        for i, text in enumerate(texts):
            ids = self.encode(text)
            target = int(targets[i]) if targets is not None else int(self.proba(ids).argmax())
            scores = self._attribute(ids, target)
            scores[self.special(ids)[0].numpy()] = 0.0
            out.append(scores)
        return out

    def explain(self, text: str, label_names: Sequence[str], target: int | None = None) -> TokenAttribution:
        ids = self.encode(text)
        probs = self.proba(ids)[0]
        target = int(probs.argmax()) if target is None else target
        scores = self.attribute([text], [target])[0]
        words = self.words(text, scores)
        return TokenAttribution(text=text, tokens=self.tokenizer.convert_ids_to_tokens(ids[0].tolist()),
                                scores=[float(s) for s in scores], method=self.method, target=label_names[target],
                                target_probability=float(probs[target]), words=[w for w, _ in words],
                                word_scores=[v for _, v in words])

    def words(self, text: str, scores: np.ndarray) -> list[tuple[str, float]]:
        """``text``'s words with the summed scores of their tokens (special tokens left out): the words are the
        tokenizer's own pre-tokenisation (WordPiece, byte-level BPE and SentencePiece alike), read from the text
        through the tokens' character offsets."""
        encoding = self.tokenizer(text, truncation=True, max_length=self.max_length, return_offsets_mapping=True)
        try:
            word_ids = encoding.word_ids()
        except ValueError:  # a slow (Python) tokenizer keeps no word ids: merge WordPiece's ## pieces
            return _wordpiece_words(self.tokenizer.convert_ids_to_tokens(encoding["input_ids"]), scores)
        spans: list[list] = []
        current = None
        for i, (word, (start, end)) in enumerate(zip(word_ids, encoding["offset_mapping"])):
            if word is None:
                current = None
                continue
            if word != current:
                spans.append([start, end, 0.0])
                current = word
            spans[-1][1] = max(spans[-1][1], end)
            spans[-1][2] += float(scores[i])
        return [(text[a:b].strip(), score) for a, b, score in spans if text[a:b].strip()]

    def _attribute(self, ids: torch.Tensor, target: int) -> np.ndarray:
        raise NotImplementedError

    # presence-mask forward for the perturbation methods: 1 keeps a token, 0 masks it
    def _masked_forward(self, ids: torch.Tensor):
        def forward(presence: torch.Tensor) -> torch.Tensor:
            batch = torch.where(presence > 0.5, ids.expand(presence.shape[0], -1), torch.full_like(ids, self.mask_id))
            with torch.no_grad():
                return torch.softmax(self.model(batch, torch.ones_like(batch)), dim=-1)

        return forward


class IntegratedGradientsExplainer(_Explainer):
    method = "integrated_gradients"

    def _attribute(self, ids: torch.Tensor, target: int) -> np.ndarray:
        LayerIntegratedGradients = optional_import("captum.attr", "explain").LayerIntegratedGradients

        def forward(input_ids, attention_mask):
            return torch.softmax(self.model(input_ids, attention_mask), dim=-1)

        baseline = torch.where(self.special(ids), ids, torch.full_like(ids, self.tokenizer.pad_token_id))
        lig = LayerIntegratedGradients(forward, self.model.input_embeddings())
        attributions = lig.attribute(
            ids, baselines=baseline, target=target, additional_forward_args=(torch.ones_like(ids),),
            n_steps=self.settings.get("n_steps", 32), internal_batch_size=self.settings.get("internal_batch_size", 32),
        )
        return attributions.sum(dim=-1)[0].detach().numpy().astype(np.float64)


class OcclusionExplainer(_Explainer):
    method = "occlusion"

    def _attribute(self, ids: torch.Tensor, target: int) -> np.ndarray:
        Occlusion = optional_import("captum.attr", "explain").Occlusion

        presence = torch.ones(ids.shape, dtype=torch.float32)
        occlusion = Occlusion(self._masked_forward(ids))
        scores = occlusion.attribute(presence, sliding_window_shapes=(1,), baselines=0.0, target=target,
                                     perturbations_per_eval=64)
        return scores[0].numpy().astype(np.float64)


class KernelShapExplainer(_Explainer):
    method = "kernel_shap"

    def _attribute(self, ids: torch.Tensor, target: int) -> np.ndarray:
        KernelShap = optional_import("captum.attr", "explain").KernelShap

        torch.manual_seed(self.seed)
        presence = torch.ones(ids.shape, dtype=torch.float32)
        shap = KernelShap(self._masked_forward(ids))
        scores = shap.attribute(presence, baselines=0.0, target=target,
                                feature_mask=torch.arange(ids.shape[1]).unsqueeze(0),
                                n_samples=self.settings.get("n_samples", 200), perturbations_per_eval=64)
        return scores[0].numpy().astype(np.float64)


class RandomExplainer(_Explainer):
    method = "random"

    def _attribute(self, ids: torch.Tensor, target: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, int(ids.sum())])
        return rng.random(ids.shape[1])


_EXPLAINERS = {e.method: e for e in (IntegratedGradientsExplainer, OcclusionExplainer, KernelShapExplainer, RandomExplainer)}


def make_explainer(method: str, model, tokenizer, **settings) -> _Explainer:
    if method not in _EXPLAINERS:
        from trustfm.errors import ConfigError

        raise ConfigError(f"unknown explanation method '{method}'; choose from {list(_EXPLAINERS)}")
    return _EXPLAINERS[method](model, tokenizer, **settings)


class FaithfulnessScore(BaseModel):
    method: str
    comprehensiveness: float  # mean probability drop when the top-k% tokens are deleted; higher is better
    sufficiency: float  # mean probability drop when only the top-k% tokens are kept; lower is better
    texts: int


class FaithfulnessResult(BaseModel):
    dataset: str
    bins: list[float]
    scores: list[FaithfulnessScore]
    most_faithful: str  # highest comprehensiveness - sufficiency, among methods that beat random on both


@torch.no_grad()
def _erasure_drops(explainer: _Explainer, ids: torch.Tensor, scores: np.ndarray, target: int) -> tuple[float, float]:
    content = np.flatnonzero(~explainer.special(ids)[0].numpy())
    if len(content) == 0:
        return 0.0, 0.0
    full = float(explainer.proba(ids)[0, target])
    order = content[np.argsort(-scores[content], kind="stable")]
    variants = []
    for fraction in ERASER_BINS:
        k = max(1, int(round(fraction * len(content))))
        top = set(order[:k].tolist())
        keep_without = [i for i in range(ids.shape[1]) if i not in top]
        keep_only = [i for i in range(ids.shape[1]) if i in top or i not in set(content.tolist())]
        variants += [ids[0, keep_without], ids[0, keep_only]]
    width = max(len(v) for v in variants)
    batch = torch.full((len(variants), width), explainer.tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(batch)
    for row, v in enumerate(variants):
        batch[row, : len(v)] = v
        mask[row, : len(v)] = 1
    probs = torch.softmax(explainer.model(batch, mask), dim=-1)[:, target].numpy()
    comprehensiveness = float(np.mean(full - probs[0::2]))
    sufficiency = float(np.mean(full - probs[1::2]))
    return comprehensiveness, sufficiency


def faithfulness(
    model, tokenizer, texts: Sequence[str], *, methods: Sequence[str] = METHODS, max_length: int = 128,
    dataset: str = "", seed: int = 0, settings: dict | None = None,
) -> FaithfulnessResult:
    """ERASER comprehensiveness/sufficiency of each method on ``texts`` (predicted class as target)."""
    scores = []
    for method in methods:
        explainer = make_explainer(method, model, tokenizer, max_length=max_length, seed=seed, **(settings or {}))
        comp, suff = [], []
        for text in texts:
            ids = explainer.encode(text)
            target = int(explainer.proba(ids).argmax())
            attribution = explainer.attribute([text], [target])[0]
            c, s = _erasure_drops(explainer, ids, attribution, target)
            comp.append(c)
            suff.append(s)
        scores.append(FaithfulnessScore(method=method, comprehensiveness=float(np.mean(comp)),
                                        sufficiency=float(np.mean(suff)), texts=len(texts)))
    by_method = {s.method: s for s in scores}
    random = by_method.get("random")
    candidates = [s for s in scores if s.method != "random" and (
        random is None or (s.comprehensiveness > random.comprehensiveness and s.sufficiency < random.sufficiency))]
    best = max(candidates or [s for s in scores if s.method != "random"] or scores,
               key=lambda s: s.comprehensiveness - s.sufficiency)
    return FaithfulnessResult(dataset=dataset, bins=list(ERASER_BINS), scores=scores, most_faithful=best.method)


class AttentionMap(BaseModel):
    """Attention weights for one input: ``weights[layer][head][i][j]`` is how much token i attends to j."""

    text: str
    tokens: list[str]
    weights: list[list[list[list[float]]]]


@torch.no_grad()
def attention_map(model, tokenizer, text: str, *, max_length: int = 64) -> AttentionMap:
    """Per-layer, per-head attention of the encoder for ``text`` (shape layers x heads x tokens x tokens).

    SDPA kernels do not return weights, so the encoder switches to eager attention
    for this one forward pass and back afterwards.
    """
    encoder = model.encoder
    previous = getattr(encoder.config, "_attn_implementation", None)
    ids = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
    try:
        encoder.set_attn_implementation("eager")
        out = encoder(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"], output_attentions=True)
    finally:
        if previous:
            encoder.set_attn_implementation(previous)
    weights = [layer[0].numpy().round(4).tolist() for layer in out.attentions]
    return AttentionMap(text=text, tokens=tokenizer.convert_ids_to_tokens(ids["input_ids"][0].tolist()), weights=weights)


class TermAssociation(BaseModel):
    term: str
    mean_attribution: float  # mean score towards the class, over the term's occurrences
    occurrences: int


class ErrorSlice(BaseModel):
    slice: str  # e.g. "length (tokens)", or a group column
    value: str
    n: int
    error_rate: Interval  # share of wrong predictions in the slice, with its 95% bootstrap interval


class GlobalExplanation(BaseModel):
    """Dataset-level view: terms most associated with each class, and where the model errs most."""

    dataset: str
    method: str
    texts: int
    top_terms: dict[str, list[TermAssociation]]  # class -> unigrams and bigrams, strongest first
    error_slices: list[ErrorSlice]
    not_sliced: dict[str, str]  # slice kind -> why it is missing


def _wordpiece_words(tokens: list[str], scores: np.ndarray) -> list[tuple[str, float]]:
    """Merge word pieces (##xx) into words, summing their scores; drop special tokens."""
    words: list[tuple[str, float]] = []
    for token, score in zip(tokens, scores):
        if token.startswith("[") and token.endswith("]"):
            continue
        if token.startswith("##") and words:
            words[-1] = (words[-1][0] + token[2:], words[-1][1] + float(score))
        else:
            words.append((token, float(score)))
    return words


def global_explanation(
    explainer: _Explainer, texts: Sequence[str], predicted: np.ndarray, label_names: Sequence[str], *,
    min_occurrences: int = 3, top: int = 15, dataset: str = "",
) -> GlobalExplanation:
    """Aggregate attributions towards each text's predicted class into per-class term rankings."""
    sums: dict[tuple[int, str], list[float]] = {}
    for text, target in zip(texts, predicted):
        scores = explainer.attribute([text], [int(target)])[0]
        words = explainer.words(text, scores)
        grams = [(w, s) for w, s in words] + [
            (f"{a} {b}", sa + sb) for (a, sa), (b, sb) in zip(words, words[1:])
        ]
        for term, score in grams:
            if any(ch.isalnum() for ch in term):
                sums.setdefault((int(target), term), []).append(score)
    top_terms = {}
    for c, name in enumerate(label_names):
        items = [TermAssociation(term=t, mean_attribution=float(np.mean(v)), occurrences=len(v))
                 for (cls, t), v in sums.items() if cls == c and len(v) >= min_occurrences]
        top_terms[name] = sorted(items, key=lambda x: -x.mean_attribution)[:top]
    return GlobalExplanation(dataset=dataset, method=explainer.method, texts=len(texts), top_terms=top_terms,
                             error_slices=[], not_sliced={})


def error_slices(
    correct: np.ndarray, lengths: np.ndarray, groups: dict[str, Sequence[str]], *, seed: int = 0,
    samples: int = 1000, min_size: int = 10,
) -> list[ErrorSlice]:
    """Error rate with a 95% bootstrap interval per length quartile and per group value, worst first."""
    rng = np.random.default_rng(seed)
    slices: list[tuple[str, str, np.ndarray]] = []
    edges = np.unique(np.quantile(lengths, [0.25, 0.5, 0.75]))
    bucket = np.searchsorted(edges, lengths, side="right")
    bounds = [int(lengths.min())] + [int(e) for e in edges] + [int(lengths.max())]
    for b in range(len(edges) + 1):
        slices.append(("length (tokens)", f"{bounds[b]}–{bounds[b + 1]}", bucket == b))
    for column, values in groups.items():
        values = np.asarray(values)
        for value in np.unique(values):
            slices.append((column, str(value), values == value))
    out = []
    for kind, value, member in slices:
        errors = (~correct[member]).astype(float)
        if len(errors) < min_size:
            continue
        rate = bootstrap_mean(errors, samples=samples, confidence=0.95, rng=rng)
        out.append(ErrorSlice(slice=kind, value=value, n=int(len(errors)), error_rate=rate))
    return sorted(out, key=lambda s: -s.error_rate.value)
