"""Tiny random-weight models of every architecture family trustfm supports, built from a config, with a tokenizer
of the family's kind built locally (nothing downloaded): WordPiece (the default model's vocabulary), byte-level BPE
and SentencePiece-style Unigram (both trained here on a small corpus)."""

from __future__ import annotations

import shutil
from pathlib import Path

CORPUS = [
    "the product was great and the delivery fast", "my order came broken and support was rude",
    "i love this service, friendly and perfect", "awful experience, slow refund, disappointed",
    "the item was excellent, happy with it", "terrible quality and i hate the packaging",
    "she said the film was wonderful", "he thought the muslim neighbour was kind", "a christian friend helped",
    "#sleep well tonight @friend http://example.com", "the quarterly filing lists revenue and depreciation",
] * 20
SIZE = dict(hidden=32, layers=2, heads=2, intermediate=64)


def _wordpiece(folder: Path):
    from trustfm.models.loading import default_model_dir

    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        source = default_model_dir() / name
        if source.exists():
            shutil.copy(source, folder / name)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def _fast(tokenizer, *, cls: str, sep: str, pad: str, unk: str, mask: str | None, template: bool):
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    if template:
        tokenizer.post_processor = TemplateProcessing(
            single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} $B {sep}",
            special_tokens=[(cls, tokenizer.token_to_id(cls)), (sep, tokenizer.token_to_id(sep))])
    special = {"bos_token": cls, "eos_token": sep, "pad_token": pad, "unk_token": unk}
    if template:
        special.update(cls_token=cls, sep_token=sep)
    if mask:
        special["mask_token"] = mask
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **special)


def _bpe(*, encoder_specials: bool):
    """Byte-level BPE (RoBERTa, ModernBERT: with <s> ... </s>; GPT-2 and Qwen2 style: none, pad = end of text)."""
    from tokenizers import ByteLevelBPETokenizer

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"] if encoder_specials else ["<|endoftext|>"]
    tokenizer = ByteLevelBPETokenizer()
    tokenizer.train_from_iterator(CORPUS, vocab_size=400, min_frequency=1, special_tokens=specials)
    if encoder_specials:
        return _fast(tokenizer._tokenizer, cls="<s>", sep="</s>", pad="<pad>", unk="<unk>", mask="<mask>",
                     template=True)
    return _fast(tokenizer._tokenizer, cls="<|endoftext|>", sep="<|endoftext|>", pad="<|endoftext|>",
                 unk="<|endoftext|>", mask=None, template=False)


def _unigram():
    """SentencePiece-style Unigram with [CLS] ... [SEP] (DeBERTa-v3, XLM-R)."""
    from tokenizers import SentencePieceUnigramTokenizer

    tokenizer = SentencePieceUnigramTokenizer()
    tokenizer.train_from_iterator(CORPUS, vocab_size=300, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
                                  unk_token="[UNK]")
    return _fast(tokenizer._tokenizer, cls="[CLS]", sep="[SEP]", pad="[PAD]", unk="[UNK]", mask="[MASK]", template=True)


def _config(family: str, tokenizer):
    import transformers as T

    h, n, a, i = SIZE["hidden"], SIZE["layers"], SIZE["heads"], SIZE["intermediate"]
    v = len(tokenizer)
    ids = dict(pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id or tokenizer.cls_token_id,
               eos_token_id=tokenizer.eos_token_id or tokenizer.sep_token_id)
    common = dict(vocab_size=v, hidden_size=h, num_hidden_layers=n, num_attention_heads=a, intermediate_size=i,
                  max_position_embeddings=128, **ids)
    return {
        "bert": lambda: T.BertConfig(**common),
        "distilbert": lambda: T.DistilBertConfig(vocab_size=v, dim=h, n_layers=n, n_heads=a, hidden_dim=i,
                                                 max_position_embeddings=128, pad_token_id=ids["pad_token_id"]),
        "electra": lambda: T.ElectraConfig(embedding_size=16, **common),
        "roberta": lambda: T.RobertaConfig(**{**common, "max_position_embeddings": 130}),
        "xlm-roberta": lambda: T.XLMRobertaConfig(**{**common, "max_position_embeddings": 130}),
        "deberta-v2": lambda: T.DebertaV2Config(**common, relative_attention=True, position_buckets=16,
                                                pos_att_type=["p2c", "c2p"], max_relative_positions=-1),
        "modernbert": lambda: T.ModernBertConfig(**{**common, "num_hidden_layers": 3}, global_attn_every_n_layers=2,
                                                 local_attention=16, cls_token_id=ids["bos_token_id"],
                                                 sep_token_id=ids["eos_token_id"]),
        "qwen2": lambda: T.Qwen2Config(**{**common, "num_attention_heads": 4}, num_key_value_heads=2),
        "gpt2": lambda: T.GPT2Config(vocab_size=v, n_embd=h, n_layer=n, n_head=a, n_positions=128, **ids),
    }[family]()


# family -> tokenizer kind
TOKENIZERS = {"bert": "wordpiece", "distilbert": "wordpiece", "electra": "wordpiece", "roberta": "bpe",
              "xlm-roberta": "unigram", "deberta-v2": "unigram", "modernbert": "bpe", "qwen2": "bpe-decoder",
              "gpt2": "bpe-decoder"}
FAMILIES = tuple(TOKENIZERS)


def build_tiny_model(family: str, folder: Path, *, seed: int = 0) -> Path:
    """A tiny random-weight ``family`` model saved (safetensors) with its tokenizer in ``folder``."""
    import torch
    from transformers import AutoModel

    folder.mkdir(parents=True, exist_ok=True)
    kind = TOKENIZERS[family]
    tokenizer = (_wordpiece(folder) if kind == "wordpiece" else _unigram() if kind == "unigram"
                 else _bpe(encoder_specials=kind == "bpe"))
    torch.manual_seed(seed)
    model = AutoModel.from_config(_config(family, tokenizer))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
