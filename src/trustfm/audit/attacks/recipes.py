"""Adversarial attacks on a text classifier, batched across texts.

Two attacks, one result shape (:class:`AttackResult`):

* :func:`deepwordbug_attack` — black-box, character level (Gao et al., 2018, as
  TextAttack's ``DeepWordBug`` recipe sets it up): rank words by how much the
  gold-class probability drops when the word is replaced by ``[UNK]``, then walk
  the words in that order trying four character edits per word (swap two
  neighbours, substitute, delete, insert one character), keeping the edit that
  lowers the gold probability most, until the label flips. Stop words are never
  edited, a word is edited at most once, and the total Levenshtein distance
  stays within ``max_edit_distance``. Only ``predict_proba(texts)`` is needed.
* :func:`hotflip_attack` — white-box, token level (Ebrahimi et al., 2018): the
  gradient of the loss with respect to the input embeddings scores every swap
  of a whole-word token for one of its nearest neighbours in the model's own
  embedding matrix (first-order estimate ``(e_new - e_old) · ∇``); the best
  ``beam`` swaps per text are then checked with a real forward pass and the
  best kept, up to ``max_perturbed_share`` of the words.

Why they are fast: the search is greedy per text, as in TextAttack, but every
step runs for all texts still under attack at once, so the model sees a few
large, length-sorted batches instead of one small batch per text and step.

Success rate counts texts whose prediction was correct and was flipped, over
the texts attacked (correct ones; wrong ones are "skipped", as in TextAttack).
Robust accuracy is the share of all texts still classified correctly after the
attack.
"""

from __future__ import annotations

import re
import string
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np
from pydantic import BaseModel

from trustfm.results import Interval, bootstrap_mean

_WORD = re.compile(r"[A-Za-z0-9]+(?:['’-][A-Za-z0-9]+)*")

# NLTK's English stop-word list (179 words), which TextAttack's recipes also use:
# editing these rarely changes what a sentence means to a reader, so attacks skip them.
STOPWORDS = frozenset("""
i me my myself we our ours ourselves you you're you've you'll you'd your yours yourself yourselves he him his
himself she she's her hers herself it it's its itself they them their theirs themselves what which who whom this
that that'll these those am is are was were be been being have has had having do does did doing a an the and but
if or because as until while of at by for with about against between into through during before after above below
to from up down in out on off over under again further then once here there when where why how all any both each
few more most other some such no nor not only own same so than too very s t can will just don don't should
should've now d ll m o re ve y ain aren aren't couldn couldn't didn didn't doesn doesn't hadn hadn't hasn hasn't
haven haven't isn isn't ma mightn mightn't mustn mustn't needn needn't shan shan't shouldn shouldn't wasn wasn't
weren weren't won won't wouldn wouldn't
""".split())


class AdversarialExample(BaseModel):
    original: str
    adversarial: str
    original_label: str
    adversarial_label: str
    words_perturbed: int
    queries: int


class AttackResult(BaseModel):
    """One attack on one set of texts.

    ``success_rate``: flipped / attacked, in [0, 1]. ``robust_accuracy``: share of
    all ``texts`` still correct after the attack. ``mean_queries``: model
    evaluations per attacked text. ``mean_words_perturbed``: share of a text's
    words changed, over successful attacks.
    """

    attack: str
    kind: str  # black-box | white-box
    dataset: str
    texts: int
    clean_accuracy: float
    attacked: int
    skipped: int
    succeeded: int
    success_rate: Interval
    robust_accuracy: Interval
    mean_queries: float
    mean_words_perturbed: float
    seconds: float
    settings: dict[str, float | int | str]
    examples: list[AdversarialExample]
    attacked_rows: list[int] = []  # positions (in the texts given) of the texts attacked: those classified right
    succeeded_rows: list[int] = []  # positions of the texts whose label the attack flipped


@dataclass
class _Target:
    """One text under attack: its words' spans and what has been changed so far."""

    row: int
    gold: int
    pieces: list[str]  # text split into alternating [gap, word, gap, word, ..., gap]
    original_words: int
    order: list[int] = field(default_factory=list)  # word numbers by importance, most important first
    step: int = 0
    edits: int = 0
    queries: int = 0
    perturbed: set[int] = field(default_factory=set)
    gold_proba: float = 1.0
    done: bool = False
    succeeded: bool = False

    def text(self) -> str:
        return "".join(self.pieces)

    def with_word(self, k: int, word: str) -> str:
        pieces = list(self.pieces)
        pieces[2 * k + 1] = word
        return "".join(pieces)


def _split_words(text: str) -> list[str]:
    pieces, last = [], 0
    for m in _WORD.finditer(text):
        pieces += [text[last:m.start()], m.group(0)]
        last = m.end()
    pieces.append(text[last:])
    return pieces


def _char_edits(word: str, rng: np.random.Generator) -> list[tuple[str, int]]:
    """One random candidate per DeepWordBug edit, with its Levenshtein cost: (new word, cost)."""
    out: list[tuple[str, int]] = []
    n = len(word)
    if n <= 1:
        return out
    i = int(rng.integers(n - 1))
    if word[i] != word[i + 1]:
        out.append((word[:i] + word[i + 1] + word[i] + word[i + 2:], 2))
    i = int(rng.integers(n))
    letter = string.ascii_lowercase[int(rng.integers(26))]
    if letter != word[i]:
        out.append((word[:i] + letter + word[i + 1:], 1))
    i = int(rng.integers(n))
    out.append((word[:i] + word[i + 1:], 1))
    i = int(rng.integers(n + 1))
    out.append((word[:i] + string.ascii_lowercase[int(rng.integers(26))] + word[i:], 1))
    return out


def _finish(
    attack: str, kind: str, targets: list[_Target], adversarial: dict[int, str], final_pred: dict[int, int],
    texts: Sequence[str], gold: np.ndarray, base_pred: np.ndarray, label_names: Sequence[str], *, dataset: str,
    seconds: float, settings: dict, bootstrap_samples: int, confidence: float, seed: int, examples: int,
) -> AttackResult:
    rng = np.random.default_rng(seed)
    correct_after = (base_pred == gold).astype(float)
    succeeded = [t for t in targets if t.succeeded]
    for t in succeeded:
        correct_after[t.row] = 0.0
    flipped = np.array([float(t.succeeded) for t in targets])
    shares = [len(t.perturbed) / max(t.original_words, 1) for t in succeeded]
    shown = sorted(succeeded, key=lambda t: (len(t.perturbed), t.row))[:examples]
    return AttackResult(
        attack=attack, kind=kind, dataset=dataset, texts=len(texts),
        clean_accuracy=float((base_pred == gold).mean()) if len(texts) else float("nan"),
        attacked=len(targets), skipped=len(texts) - len(targets), succeeded=len(succeeded),
        success_rate=bootstrap_mean(flipped, samples=bootstrap_samples, confidence=confidence, rng=rng)
        if len(targets) else Interval(value=float("nan")),
        robust_accuracy=bootstrap_mean(correct_after, samples=bootstrap_samples, confidence=confidence, rng=rng),
        mean_queries=float(np.mean([t.queries for t in targets])) if targets else 0.0,
        mean_words_perturbed=float(np.mean(shares)) if shares else 0.0,
        seconds=seconds, settings=settings,
        attacked_rows=[t.row for t in targets], succeeded_rows=[t.row for t in succeeded],
        examples=[AdversarialExample(
            original=texts[t.row], adversarial=adversarial[t.row], original_label=label_names[int(gold[t.row])],
            adversarial_label=label_names[final_pred[t.row]], words_perturbed=len(t.perturbed), queries=t.queries,
        ) for t in shown],
    )


def deepwordbug_attack(
    texts: Sequence[str], labels: np.ndarray, predict_proba: Callable[[list[str]], np.ndarray],
    label_names: Sequence[str], *, search_predict_proba: Callable[[list[str]], np.ndarray] | None = None,
    max_edit_distance: int = 30, unk_token: str = "[UNK]",
    dataset: str = "", bootstrap_samples: int = 1000, confidence: float = 0.95, seed: int = 0, examples: int = 8,
) -> AttackResult:
    """Black-box character attack on ``texts`` with gold ``labels`` (n,) class ids.

    ``predict_proba(list of str) -> (m, num_labels)`` is the only access to the
    model; it is called with every text under attack at once, step by step.
    ``search_predict_proba``, if given, answers the search's queries instead
    (e.g. the same model in bf16); the clean predictions, every flip the
    search sees (the search goes on when ``predict_proba`` disagrees) and every
    final adversarial text are judged by ``predict_proba``.
    """
    query = search_predict_proba or predict_proba
    started = time.perf_counter()
    labels = np.asarray(labels, dtype=np.int64)
    base = predict_proba(list(texts))
    base_pred = base.argmax(axis=1)
    targets: list[_Target] = []
    for row, text in enumerate(texts):
        if base_pred[row] != labels[row]:
            continue
        pieces = _split_words(text)
        targets.append(_Target(row=row, gold=int(labels[row]), pieces=pieces, original_words=len(pieces) // 2,
                               gold_proba=float(base[row, labels[row]]), queries=1))

    # word importance: drop in gold probability when the word becomes [UNK]; one batch for all texts
    variants, owners = [], []
    for t in targets:
        words = t.pieces[1::2]
        candidates = [k for k, w in enumerate(words) if w.lower() not in STOPWORDS]
        for k in candidates:
            variants.append(t.with_word(k, unk_token))
            owners.append((t, k))
        t.queries += len(candidates)
    if variants:
        proba = query(variants)
        drops: dict[int, list[tuple[float, int]]] = {}
        for (t, k), p in zip(owners, proba):
            drops.setdefault(id(t), []).append((t.gold_proba - float(p[t.gold]), k))
        for t in targets:
            ranked = sorted(drops.get(id(t), []), key=lambda x: -x[0])  # stable: ties keep word order
            t.order = [k for _, k in ranked]

    active = [t for t in targets if t.order]
    judged: dict[int, int] = {}  # row -> predict_proba's label for a successful adversarial text
    for t in targets:
        t.done = not t.order
    while active:
        cand_text, cand_owner = [], []
        for t in active:
            k = t.order[t.step]
            rng = np.random.default_rng([seed, t.row, t.step])
            for word, cost in _char_edits(t.pieces[2 * k + 1], rng):
                if t.edits + cost <= max_edit_distance:
                    cand_text.append(t.with_word(k, word))
                    cand_owner.append((t, k, word, cost))
        best: dict[int, tuple[float, int, tuple]] = {}
        if cand_text:
            proba = query(cand_text)
            for (t, k, word, cost), p in zip(cand_owner, proba):
                t.queries += 1
                g = float(p[t.gold])
                if id(t) not in best or g < best[id(t)][0]:
                    best[id(t)] = (g, int(p.argmax()), (k, word, cost))
        flipped: list[tuple[_Target, int]] = []  # (target, label the search model now predicts)
        for t in active:
            t.step += 1
            if id(t) in best and best[id(t)][0] < t.gold_proba:
                g, pred, (k, word, cost) = best[id(t)]
                t.pieces[2 * k + 1] = word
                t.gold_proba, t.edits = g, t.edits + cost
                t.perturbed.add(k)
                if pred != t.gold:
                    flipped.append((t, pred))
            if t.step >= len(t.order):
                t.done = True
        if flipped and query is not predict_proba:
            # a flip seen by the search model counts only once the model itself agrees; otherwise search on
            verdict = predict_proba([t.text() for t, _ in flipped]).argmax(axis=1)
            for t, _ in flipped:
                t.queries += 1
            flipped = [(t, int(pred)) for (t, _), pred in zip(flipped, verdict) if pred != t.gold]
        for t, pred in flipped:
            t.succeeded = t.done = True
            judged[t.row] = pred
        active = [t for t in active if not t.done]

    adversarial = {t.row: t.text() for t in targets}
    # every text is judged by predict_proba on its final form, as it would be served; a success already was
    rest = [t for t in targets if t.row not in judged]
    final = predict_proba([adversarial[t.row] for t in rest]).argmax(axis=1) if rest else []
    final_pred = {**judged, **{t.row: int(p) for t, p in zip(rest, final)}}
    for t in targets:
        t.succeeded = final_pred[t.row] != t.gold
    return _finish(
        "deepwordbug", "black-box", targets, adversarial, final_pred, texts, labels, base_pred, label_names,
        dataset=dataset, seconds=time.perf_counter() - started,
        settings={"max_edit_distance": max_edit_distance, "unk_token": unk_token},
        bootstrap_samples=bootstrap_samples, confidence=confidence, seed=seed, examples=examples,
    )


@lru_cache(maxsize=8)
def _swappable_vocab(tokenizer) -> np.ndarray:
    """Ids of vocabulary entries that are whole alphabetic words (no ``##`` pieces, no special tokens)."""
    vocab = tokenizer.get_vocab()
    special = set(tokenizer.all_special_ids)
    return np.array(sorted(i for tok, i in vocab.items() if tok.isalpha() and len(tok) > 1 and i not in special
                           and tok.lower() not in STOPWORDS), dtype=np.int64)


def hotflip_attack(
    texts: Sequence[str], labels: np.ndarray, model, tokenizer, label_names: Sequence[str], *, max_length: int = 128,
    neighbours: int = 30, beam: int = 8, max_perturbed_share: float = 0.25, batch_size: int = 32,
    dataset: str = "", bootstrap_samples: int = 1000, confidence: float = 0.95, seed: int = 0, examples: int = 8,
) -> AttackResult:
    """White-box token-swap attack on a :class:`~trustfm.models.TextClassifier` and its fast tokenizer.

    Swaps only single-token words for one of their ``neighbours`` nearest
    vocabulary words (cosine similarity of input embeddings), so the adversarial
    text is real text; it is re-tokenised and re-classified at the end, and the
    result counts only texts whose re-classified label differs.
    """
    import torch

    from trustfm.data.batching import EncodedTexts, encode_texts
    from trustfm.models.inference import predict_proba as model_proba

    started = time.perf_counter()
    labels = np.asarray(labels, dtype=np.int64)
    pad = tokenizer.pad_token_id

    def proba_of_texts(batch_texts: Sequence[str]) -> np.ndarray:
        return model_proba(model, encode_texts(tokenizer, list(batch_texts), max_length), pad_id=pad,
                           batch_size=max(batch_size, 64))

    base = proba_of_texts(texts)
    base_pred = base.argmax(axis=1)
    was_training = model.training
    model.eval()
    embedding = model.input_embeddings().weight.detach()
    allowed = _swappable_vocab(tokenizer)
    allowed_t = torch.from_numpy(allowed)
    allowed_unit = torch.nn.functional.normalize(embedding[allowed_t], dim=1)
    neighbour_cache: dict[int, np.ndarray] = {}

    def neighbours_of(ids: list[int]) -> None:
        todo = [i for i in dict.fromkeys(ids) if i not in neighbour_cache]
        if not todo:
            return
        unit = torch.nn.functional.normalize(embedding[torch.tensor(todo)], dim=1)
        top = (unit @ allowed_unit.T).topk(neighbours + 1, dim=1).indices.numpy()
        for i, row in zip(todo, top):
            cand = allowed[row]
            neighbour_cache[i] = cand[cand != i][:neighbours]

    allowed_set = set(allowed.tolist())
    targets: list[_Target] = []
    states: dict[int, dict] = {}
    for row, text in enumerate(texts):
        if base_pred[row] != labels[row]:
            continue
        enc = tokenizer(text, truncation=True, max_length=max_length, return_offsets_mapping=True)
        ids, offsets = list(enc["input_ids"]), enc["offset_mapping"]
        word_ids = enc.word_ids()
        # a position is swappable when its word is exactly one token and that token is in the swappable vocabulary
        counts: dict[int, int] = {}
        for w in word_ids:
            if w is not None:
                counts[w] = counts.get(w, 0) + 1
        positions = [p for p, w in enumerate(word_ids) if w is not None and counts[w] == 1 and ids[p] in allowed_set]
        t = _Target(row=row, gold=int(labels[row]), pieces=[text], original_words=max(len(counts), 1),
                    gold_proba=float(base[row, labels[row]]), queries=1)
        budget = max(1, int(np.floor(max_perturbed_share * len(counts))))
        states[row] = {"ids": ids, "offsets": offsets, "positions": positions, "budget": budget, "swaps": {}}
        t.done = not positions
        targets.append(t)
        neighbours_of([ids[p] for p in positions])

    loss_fn = torch.nn.CrossEntropyLoss(reduction="sum")
    active = [t for t in targets if not t.done]
    while active:
        for start in range(0, len(active), batch_size):
            chunk = active[start:start + batch_size]
            width = max(len(states[t.row]["ids"]) for t in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for j, t in enumerate(chunk):
                seq = states[t.row]["ids"]
                ids[j, :len(seq)] = torch.tensor(seq)
                mask[j, :len(seq)] = 1
            embeds = embedding[ids].clone().requires_grad_(True)
            logits = model(inputs_embeds=embeds, attention_mask=mask)
            loss_fn(logits, torch.tensor([t.gold for t in chunk])).backward()
            grad = embeds.grad.detach()
            cand_ids, cand_owner = [], []
            for j, t in enumerate(chunk):
                st = states[t.row]
                t.queries += 1  # the gradient pass
                scored = []
                for p in st["positions"]:
                    if p in st["swaps"]:
                        continue
                    old = st["ids"][p]
                    new = neighbour_cache[old]
                    if len(new) == 0:
                        continue
                    gain = ((embedding[torch.from_numpy(new)] - embedding[old]) @ grad[j, p]).numpy()
                    scored += [(float(g), p, int(v)) for g, v in zip(gain, new)]
                scored.sort(key=lambda x: -x[0])
                for _, p, v in scored[:beam]:
                    seq = list(st["ids"])
                    seq[p] = v
                    cand_ids.append(np.asarray(seq, dtype=np.int64))
                    cand_owner.append((t, p, v))
            if not cand_ids:
                for t in chunk:
                    t.done = True
                continue
            proba = model_proba(model, EncodedTexts(cand_ids, max_length, np.zeros(len(cand_ids), bool)),
                                pad_id=pad, batch_size=max(batch_size, 64))
            best: dict[int, tuple[float, int, int, int]] = {}
            for (t, p, v), pr in zip(cand_owner, proba):
                t.queries += 1
                g = float(pr[t.gold])
                if id(t) not in best or g < best[id(t)][0]:
                    best[id(t)] = (g, int(pr.argmax()), p, v)
            for t in chunk:
                st = states[t.row]
                if id(t) not in best or best[id(t)][0] >= t.gold_proba:
                    t.done = True  # no swap lowers the gold probability any more
                    continue
                g, pred, p, v = best[id(t)]
                st["ids"][p] = v
                st["swaps"][p] = v
                t.perturbed.add(p)
                t.gold_proba = g
                t.succeeded = pred != t.gold
                t.done = t.succeeded or len(st["swaps"]) >= st["budget"]
        active = [t for t in active if not t.done]
    model.train(was_training)

    adversarial: dict[int, str] = {}
    for t in targets:
        st, text = states[t.row], texts[t.row]
        for p in sorted(st["swaps"], reverse=True):  # right to left, so earlier offsets stay valid
            a, b = st["offsets"][p]
            word = tokenizer.convert_ids_to_tokens(st["swaps"][p])
            adversarial_word = word.capitalize() if text[a:b][:1].isupper() else word
            text = text[:a] + adversarial_word + text[b:]
        adversarial[t.row] = text
    final = proba_of_texts([adversarial[t.row] for t in targets]).argmax(axis=1) if targets else []
    final_pred = {t.row: int(p) for t, p in zip(targets, final)}
    for t in targets:
        t.succeeded = final_pred[t.row] != t.gold
    return _finish(
        "hotflip", "white-box", targets, adversarial, final_pred, texts, labels, base_pred, label_names,
        dataset=dataset, seconds=time.perf_counter() - started,
        settings={"neighbours": neighbours, "beam": beam, "max_perturbed_share": max_perturbed_share},
        bootstrap_samples=bootstrap_samples, confidence=confidence, seed=seed, examples=examples,
    )


ATTACKS = {"deepwordbug": "black-box character edits", "hotflip": "white-box gradient-guided word swaps"}
