"""``import_checkpoint``: a sequence classifier trained elsewhere becomes a run folder that every command takes.

The checkpoint (a Hugging Face folder: ``config.json`` naming a ``*ForSequenceClassification`` architecture, its
weights, its tokenizer) keeps its own head and its own classes (``id2label``); it is copied byte for byte into
``RUN_DIR/model`` (safetensors; pickle weights only when allowed, and then converted to safetensors, the pickle
files' hashes recorded) and answers through :class:`~trustfm.models.hf_classifier.HFSequenceClassifier`.

Provenance says plainly what is known: the checkpoint's hashes, where it came from, the data given to audit it.
What only training could record -- the training data (unless given, and then as the importer states it), the
training procedure, any differential privacy or mitigation -- is recorded as unknown (``imported.unknown``), and
the report and model card say so; nothing is guessed.

``import_endpoint``: a classifier reachable only over HTTP (:mod:`trustfm.models.endpoint`) becomes a run folder
the same way; its model folder holds the endpoint's spec (no secret: the token stays in the environment), whose
hash stands for the model, and the audits that need only its answers run on it.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

from trustfm.errors import ConfigError

log = logging.getLogger("trustfm.train")

UNKNOWN_WHEN_IMPORTED = ("training procedure (epochs, optimiser, seed)", "differential privacy",
                         "fairness and robustness mitigations", "data the model was validated on")
_DEFAULT_ID2LABEL = re.compile(r"^LABEL_(\d+)$")


def checkpoint_classes(model_dir: Path) -> tuple[list[str], str]:
    """The checkpoint's classes in output order (from ``id2label``) and its architecture; ConfigError when the
    folder is not a sequence-classification checkpoint."""
    config_file = model_dir / "config.json"
    if not config_file.is_file():
        raise ConfigError(f"{model_dir} is not a Hugging Face model folder (no config.json)")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{config_file}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    architectures = config.get("architectures") or []
    classifier = next((a for a in architectures if a.endswith("ForSequenceClassification")), None)
    if classifier is None:
        raise ConfigError(f"{model_dir} holds a {', '.join(architectures) or config.get('model_type', 'model')} "
                          "checkpoint, not a sequence classifier (*ForSequenceClassification): fine-tune it with "
                          "`trustfm train --model` instead")
    from transformers import AutoConfig

    # Transformers leaves its default names (LABEL_0, ...) out of config.json: its config object has them back
    id2label = config.get("id2label") or AutoConfig.from_pretrained(model_dir, local_files_only=True).id2label
    try:
        names = [str(id2label[k]) for k in sorted(id2label, key=int)]
    except (ValueError, TypeError):
        raise ConfigError(f"{config_file}: id2label keys must be class indices 0..k-1") from None
    if len(names) < 2:
        raise ConfigError(f"{config_file}: id2label names {len(names)} class(es); a classifier needs two or more")
    return names, classifier


def _resolve_classes(names: list[str], data_labels: set[str], where: str) -> tuple[list[str], str | None]:
    """The classes to read the data with: the checkpoint's names, or its indices when the checkpoint kept
    Transformers' default names (LABEL_0, ...) and the data is labelled 0..k-1 (said in the note)."""
    if data_labels <= set(names):
        return names, None
    indices = [str(i) for i in range(len(names))]
    if all(_DEFAULT_ID2LABEL.match(n) for n in names) and data_labels <= set(indices):
        return indices, (f"the checkpoint names its classes {names[0]}..{names[-1]} (Transformers' defaults); the "
                         f"data's labels 0..{len(names) - 1} are read as those class indices")
    unknown = sorted(data_labels - set(names))[:5]
    raise ConfigError(f"{where}: labels {unknown} are not classes of the checkpoint ({names}, from its id2label): "
                      "relabel the data, or fix the checkpoint's id2label")


def _data_labels(config) -> tuple[set[str], str]:
    """Every label in the configured data files (read as the run will read them), and the first file's name."""
    from trustfm.data.prepare import load_labelled

    labels: set[str] = set()
    files = [p for p in (config.train, config.validation, config.test) if p is not None]
    for path in files:
        labels |= set(load_labelled(path, config).labels)
    return labels, str(files[0])


def import_checkpoint(model_dir: str | Path, config, *, allow_pickle: bool = False) -> Path:
    """Write the run folder ``config.output_dir`` for the checkpoint in ``model_dir``; returns its root.

    ``config``: a :class:`~trustfm.config.RunConfig` whose ``data`` names the files to audit it on (a test file;
    the training file too where the user has it) and whose ``model.name_or_path`` is ``model_dir``.
    """
    from trustfm.config.load import dump_config
    from trustfm.data.prepare import file_sha256, prepare_data
    from trustfm.fileio import atomic_path, write_json_atomic
    from trustfm.models.classifier import MODEL_META
    from trustfm.models.hf_classifier import ARCHITECTURE, load_hf_classifier
    from trustfm.models.loading import PICKLE_SUFFIXES, check_weight_format, model_weight_hashes, quiet_transformers
    from trustfm.runs import RunPaths, RunRecord, now_iso, package_versions
    from trustfm.train.run import write_rejections

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ConfigError(f"{model_dir} is not a folder")
    if config.data.test is None:
        raise ConfigError("give --test-data: the labelled file the imported model is audited on")
    names, architecture = checkpoint_classes(model_dir)
    safetensors = check_weight_format(model_dir, allow_pickle=allow_pickle)
    labels, first_file = _data_labels(config.data)
    classes, note = _resolve_classes(names, labels, first_file)
    # every row of a given training file was (as the importer states) trained on: nothing is carved out of it
    data_config = config.data.model_copy(update={"classes": classes, "split": config.data.split.model_copy(
        update={"validation": 0.0, "test": 0.0})})
    config = config.model_copy(update={"data": data_config})
    paths = RunPaths(Path(config.output_dir))
    if paths.root.exists() and any(paths.root.iterdir()):
        raise ConfigError(f"{paths.root} exists and is not empty: choose another output folder")
    quiet_transformers()
    started = now_iso()
    model = load_hf_classifier(model_dir, allow_pickle=allow_pickle)
    if model.num_labels != len(classes):
        raise ConfigError(f"{model_dir}: the head has {model.num_labels} outputs but id2label names {len(classes)}")
    data = prepare_data(data_config, seed=config.seed)
    source_files = sorted(p for p in model_dir.iterdir() if p.is_file())
    with atomic_path(paths.root) as tmp:
        tmp.mkdir()
        run = RunPaths(tmp)
        run.model.mkdir()
        for file in source_files:  # the checkpoint's own bytes (pickle weights are converted below)
            if file.suffix not in PICKLE_SUFFIXES:
                shutil.copy2(file, run.model / file.name)
        if not safetensors:
            model.model.save_pretrained(run.model, safe_serialization=True)
        meta = {"label_names": classes, "pooling": model.pooling, "dropout": 0.0, "architecture": ARCHITECTURE,
                "max_length": data_config.max_length, "base_model": str(model_dir)}
        write_json_atomic(run.model / MODEL_META, meta)
        dump_config(config, run.config)
        truncated = _truncated(run.model, data, data_config.max_length)
        record = RunRecord(status="complete", started=started, finished=now_iso(), seed=config.seed,
                           versions=package_versions(), data_hashes=data.file_hashes,
                           base_model={"name_or_path": str(model_dir), "path": str(model_dir.resolve()),
                                       "weights_sha256": {p.name: file_sha256(p) for p in source_files
                                                          if p.suffix in (".safetensors", *PICKLE_SUFFIXES)}},
                           label_names=classes, rows={"read": data.rows_read, "rejected": len(data.rejected),
                                                      **data.counts(), "augmented": 0},
                           truncated=truncated, model_sha256=model_weight_hashes(run.model))
        record.imported = {  # type: ignore[attr-defined]  (RunRecord keeps extra blocks)
            "source": str(model_dir.resolve()), "architecture": architecture,
            "model_type": model.model.config.model_type,
            "weights": "safetensors, copied as they were" if safetensors else
                       "pickle (allowed with --allow-pickle), converted to safetensors",
            "training_data": (f"{config.data.train}, as stated by whoever imported the model (trustfm cannot "
                              "check that the model was trained on it)" if config.data.train else "unknown"),
            "unknown": list(UNKNOWN_WHEN_IMPORTED) + ([] if config.data.train else ["training data"]),
            **({"classes": note} if note else {}),
        }
        record.save(run)
        (tmp / "results").mkdir()
        write_rejections(run.rejected, data.rejected)
    log.info("imported %s (%s) as %s", model_dir, architecture, paths.root)
    return paths.root


def _truncated(model_dir: Path, data, max_length: int) -> dict[str, int]:
    """Texts per split longer than ``max_length`` tokens (cut when the model reads them)."""
    from transformers import AutoTokenizer

    from trustfm.data.batching import encode_texts

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    return {role: int(encode_texts(tokenizer, part.texts, max_length).truncated.sum())
            for role, part in data.parts().items() if len(part)}


def import_endpoint(spec, config) -> Path:
    """Write the run folder ``config.output_dir`` for the remote classifier ``spec`` (an
    :class:`~trustfm.models.endpoint.EndpointSpec`); returns its root. ``config.data`` names the files to audit it
    on (a test file, and the training file where the user has it)."""
    from trustfm.config.load import dump_config
    from trustfm.data.prepare import prepare_data
    from trustfm.fileio import atomic_path, write_json_atomic
    from trustfm.models.classifier import MODEL_META
    from trustfm.models.endpoint import ENDPOINT_FILE, EndpointClient
    from trustfm.models.loading import model_weight_hashes
    from trustfm.runs import RunPaths, RunRecord, now_iso, package_versions
    from trustfm.train.run import write_rejections

    if config.data.test is None:
        raise ConfigError("give --test-data: the labelled file the endpoint's model is audited on")
    client = EndpointClient(spec)  # resolves the classes (a trustfm service names them) and checks the token
    spec = client.spec
    labels, first_file = _data_labels(config.data)
    classes, note = _resolve_classes(spec.classes, labels, first_file)
    spec = spec.model_copy(update={"classes": classes})
    data_config = config.data.model_copy(update={"classes": classes, "split": config.data.split.model_copy(
        update={"validation": 0.0, "test": 0.0})})
    config = config.model_copy(update={"data": data_config, "model": config.model.model_copy(
        update={"name_or_path": spec.url})})
    paths = RunPaths(Path(config.output_dir))
    if paths.root.exists() and any(paths.root.iterdir()):
        raise ConfigError(f"{paths.root} exists and is not empty: choose another output folder")
    started = now_iso()
    data = prepare_data(data_config, seed=config.seed)
    with atomic_path(paths.root) as tmp:
        tmp.mkdir()
        run = RunPaths(tmp)
        run.model.mkdir()
        write_json_atomic(run.model / ENDPOINT_FILE, spec.model_dump(mode="json"))
        write_json_atomic(run.model / MODEL_META, {"format": "endpoint", "label_names": classes,
                                                   "max_length": data_config.max_length,
                                                   "endpoint": spec.model_dump(mode="json")})
        dump_config(config, run.config)
        record = RunRecord(status="complete", started=started, finished=now_iso(), seed=config.seed,
                           versions=package_versions(), data_hashes=data.file_hashes,
                           base_model={"name_or_path": spec.url, "path": spec.url, "weights_sha256": {}},
                           label_names=classes, rows={"read": data.rows_read, "rejected": len(data.rejected),
                                                      **data.counts(), "augmented": 0},
                           model_sha256=model_weight_hashes(run.model))
        record.imported = {  # type: ignore[attr-defined]
            "source": spec.url, "architecture": f"black box behind an HTTP endpoint ({spec.protocol} protocol)",
            "model_type": "unknown", "weights": "none here: only the endpoint's answers are seen",
            "training_data": (f"{config.data.train}, as stated by whoever imported the model" if config.data.train
                              else "unknown"),
            "unknown": ["the model itself: its architecture and weights (the same URL may answer with another model "
                        "tomorrow)", *UNKNOWN_WHEN_IMPORTED] + ([] if config.data.train else ["training data"]),
            **({"classes": note} if note else {}),
        }
        record.save(run)
        (tmp / "results").mkdir()
        write_rejections(run.rejected, data.rejected)
    log.info("imported the endpoint %s as %s", spec.url, paths.root)
    return paths.root
