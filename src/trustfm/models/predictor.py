"""``Predictor``: a trained classifier, loaded once, for every consumer.

Audits, serving, monitoring and compression all ask the same three questions of
a model — class probabilities, the predicted class, the pooled embedding — and
all get them from this one object. It knows nothing of audits, rules or
detectors: those wrap it where they are used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from trustfm.errors import ConfigError
from trustfm.models.loading import quiet_transformers  # noqa: F401 - imported from here by other stages

PRECISIONS = ("fp32", "bf16", "auto")
IMAGE_CACHE = 4096  # decoded images a Predictor keeps (96 px: 27 KB each)


class Predictor:
    """The fine-tuned classifier in a model folder (``RUN_DIR/model`` or any folder :func:`save_classifier` wrote).

    Every model format answers the same way: a torch classifier (pruned and distilled ones included), torchao
    int8 (``torch-int8``) and ONNX Runtime graphs (``onnx``, loaded without torch model code). Only the torch
    formats expose :attr:`model`; :attr:`differentiable` says whether gradients reach the input embeddings
    (gradient attributions and white-box attacks need them).

    Parameters
    ----------
    model_dir:
        the model folder (``trustfm_model.json``, safetensors weights, tokenizer).
    max_length:
        tokens per text; longer texts are truncated (:attr:`last_truncated` says which).
        Default: the ``max_length`` the model was trained with.
    batch_size:
        texts per forward pass. Texts are sorted by length into batches, and the
        input order is restored, so padding is only to each batch's longest text.
    pass_cost_tokens:
        None (default): every ``batch_size`` sorted texts make one pass. A number: the passes are cut where
        padded tokens plus this fixed cost per pass are least
        (:func:`~trustfm.data.batching.padding_aware_batches`), so a few texts of mixed length (a serving
        micro-batch) run as a few length-homogeneous passes instead of one padded to the longest. Outputs
        differ from the default's in float rounding only (padding is masked).
    share_cpu:
        True where other work shares the cores (a service): ONNX Runtime's threads sleep between passes
        instead of spinning.
    precision:
        default precision of every call: ``"fp32"``, ``"bf16"`` (bfloat16 autocast)
        or ``"auto"`` (bf16 where the CPU has native bf16 kernels, else fp32).
    image_config:
        an image model's decoding limits (:class:`~trustfm.config.schema.ImageConfig`; its size is the model's).
        An image model (``modality: image`` in ``trustfm_model.json``) takes images wherever a text model takes
        texts: paths, encoded bytes, PIL images or uint8 arrays; a bad one is a ``DataError`` naming its position.
    """

    def __init__(self, model_dir: str | Path, *, max_length: int | None = None, batch_size: int = 64,
                 precision: str = "fp32", image_config=None, pass_cost_tokens: float | None = None,
                 share_cpu: bool = False):
        if precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        self.model_dir = Path(model_dir)
        meta_path = self.model_dir / "trustfm_model.json"
        if not meta_path.exists():
            raise ConfigError(f"{self.model_dir} holds no trained model (no trustfm_model.json)")
        quiet_transformers()
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        self.format: str = meta.get("format", "torch")
        self.modality: str = meta.get("modality", "text")
        self.onnx = None
        self.inputs = None
        self.remote = None  # an EndpointClient: a model reachable only over HTTP (format "endpoint")
        if self.format == "endpoint":
            from trustfm.models.endpoint import EndpointClient, EndpointSpec

            self.model, self.tokenizer = None, None
            self.remote = EndpointClient(EndpointSpec.model_validate(meta["endpoint"]))
        elif self.modality == "image":
            from trustfm.config.schema import ImageConfig
            from trustfm.models.inputs import ImageInputs

            image_config = (image_config or ImageConfig()).model_copy(update={"size": int(meta["image_size"])})
            self.inputs = ImageInputs(image_config)
            self.tokenizer = None
            if self.format == "onnx":
                from trustfm.models.onnx_session import OnnxClassifier

                self.model, self.onnx = None, OnnxClassifier(self.model_dir, spinning=not share_cpu)
            else:
                from trustfm.models.image import load_image_classifier

                self.model = load_image_classifier(self.model_dir, meta)
        elif self.format == "onnx":
            from transformers import AutoTokenizer

            from trustfm.models.onnx_session import OnnxClassifier

            self.model = None
            self.onnx = OnnxClassifier(self.model_dir, spinning=not share_cpu)
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        else:
            from trustfm.models.classifier import load_classifier

            self.model, self.tokenizer, meta = load_classifier(self.model_dir)
        self.label_names: list[str] = list(meta["label_names"])
        self.max_length = int(max_length or meta.get("max_length") or 128)
        self.batch_size = batch_size
        self.pass_cost_tokens = pass_cost_tokens
        self.precision = precision
        self.meta = meta
        self.share_cpu = share_cpu
        self.last_truncated = np.zeros(0, dtype=bool)
        self._decoded: dict[str, np.ndarray] = {}  # image path -> decoded pixels: audits predict one split often

    @classmethod
    def from_run(cls, run_dir: str | Path, **options) -> "Predictor":
        """The best model of a run folder, with the run's ``max_length`` and evaluation batch size."""
        from trustfm.config import load_config
        from trustfm.runs import existing_run

        paths = existing_run(run_dir)
        config = load_config(paths.config)
        if not (paths.model / "trustfm_model.json").exists():
            raise ConfigError(f"{paths.root} has no trained model yet (train it, or resume it with --resume)")
        options = {"max_length": config.data.max_length, "batch_size": config.train.eval_batch_size, **options}
        if config.data.modality == "image":
            options.setdefault("image_config", config.data.image)
        return cls(paths.model, **options)

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id if self.tokenizer is not None else 0

    @property
    def black_box(self) -> bool:
        """True for a model reachable only through its answers (an endpoint): no weights, no embeddings."""
        return self.remote is not None

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def differentiable(self) -> bool:
        """True when :attr:`model` is a float torch classifier that gradients flow through."""
        return self.format == "torch"

    def _batches(self, encoded) -> list[np.ndarray]:
        """The forward passes for ``encoded``: index arrays, sorted by length (see ``pass_cost_tokens``)."""
        from trustfm.data.batching import exact_length_batches, inference_batches, padding_aware_batches

        if self.format == "torch-int8":
            # torch's float kernels differ in the last bit between a padded pass and the text alone, and the next
            # int8 rounding can turn that into a visible difference: passes of equal lengths keep answers per text
            return exact_length_batches(encoded.lengths, batch_size=self.batch_size)
        if self.pass_cost_tokens is None:
            return inference_batches(encoded.lengths, batch_size=self.batch_size)
        return padding_aware_batches(encoded.lengths, max_batch=self.batch_size, pass_cost_tokens=self.pass_cost_tokens)

    def _onnx_outputs(self, encoded) -> tuple[np.ndarray, np.ndarray]:
        """Logits and pooled features from the ONNX session, length-bucketed batches, rows in input order."""
        from trustfm.data.batching import pad_arrays

        logits, pooled = None, None
        for index in self._batches(encoded):
            if self.inputs is not None:
                batch = {"pixel_values": encoded.make_batch(index)["pixel_values"].numpy()}
                batch_logits, batch_pooled = self.onnx.run_inputs(batch)
            else:
                batch_logits, batch_pooled = self.onnx.run(*pad_arrays([encoded.input_ids[i] for i in index],
                                                                       self.pad_id))
            if logits is None:
                logits = np.empty((len(encoded), batch_logits.shape[1]), dtype=np.float32)
                pooled = np.empty((len(encoded), batch_pooled.shape[1]), dtype=np.float32)
            logits[index], pooled[index] = batch_logits, batch_pooled
        if logits is None:
            return np.zeros((0, self.num_labels), np.float32), np.zeros((0, 0), np.float32)
        return logits, pooled

    def _encode(self, texts: Sequence):
        if self.inputs is not None:
            return self._encode_images(texts)
        from trustfm.data.batching import encode_texts

        encoded = encode_texts(self.tokenizer, list(texts), self.max_length)
        self.last_truncated = encoded.truncated
        return encoded

    def _encode_images(self, sources: Sequence):
        """Decoded images (:class:`~trustfm.data.images.EncodedImages`); a path decoded before is not decoded again."""
        from trustfm.data.images import ImageProblem, encode_images
        from trustfm.errors import DataError

        try:
            encoded = encode_images(sources, self.inputs.config, cache=self._decoded, cache_limit=IMAGE_CACHE)
        except ImageProblem as problem:
            raise DataError(problem.reason) from None
        self.last_truncated = np.zeros(len(sources), dtype=bool)
        return encoded

    def predict_proba(self, texts: Sequence[str], *, precision: str | None = None,
                      show_progress: bool = False) -> np.ndarray:
        """Class probabilities, float32 array (n, num_labels), rows in input order; each row sums to 1."""
        if self.remote is not None:
            self.last_truncated = np.zeros(len(texts), dtype=bool)  # the endpoint's own tokenizer is unknown
            return self.remote.predict_proba(list(texts))
        if self.onnx is not None:
            from trustfm.models.onnx_session import softmax

            return softmax(self._onnx_outputs(self._encode(texts))[0])
        from trustfm.models.inference import predict_proba

        encoded = self._encode(texts)
        return predict_proba(self.model, encoded, pad_id=self.pad_id, batches=self._batches(encoded),
                             show_progress=show_progress, precision=precision or self.precision)

    def predict(self, texts: Sequence[str], *, precision: str | None = None) -> np.ndarray:
        """Predicted class ids, int64 array (n,); ``label_names[i]`` names class ``i``."""
        return self.predict_proba(texts, precision=precision).argmax(axis=1).astype(np.int64)

    def logits_and_embeddings(self, texts: Sequence[str], *, precision: str | None = None
                              ) -> tuple[np.ndarray, np.ndarray]:
        """Logits (n, num_labels) and pooled encoder embeddings (n, hidden), float32, rows in input order. A model
        behind an endpoint gives its log-probabilities and no embedding (n, 0): it shows nothing of its insides."""
        if self.remote is not None:
            proba = self.predict_proba(texts)
            return np.log(np.clip(proba, 1e-12, 1.0)), np.zeros((len(proba), 0), dtype=np.float32)
        encoded = self._encode(texts)
        if self.onnx is not None:
            return self._onnx_outputs(encoded)
        return self._torch_outputs(encoded, precision=precision)

    def _torch_outputs(self, encoded, *, precision: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        from trustfm.models.inference import predict_logits_and_features

        return predict_logits_and_features(self.model, encoded, pad_id=self.pad_id, batches=self._batches(encoded),
                                           precision=precision or self.precision)

    def embed(self, texts: Sequence[str], *, precision: str | None = None) -> np.ndarray:
        """Pooled encoder embeddings (the head's input), float32 array (n, hidden)."""
        return self.logits_and_embeddings(texts, precision=precision)[1]

    def onnx_runtime_copy(self, *, tolerance: float = 1e-3, check_rows: int = 64, seed: int = 0) -> "Predictor":
        """This torch model as an ONNX Runtime graph exported now (in a temporary folder, loaded, deleted): a
        Predictor that answers the same, faster on CPU (no torch in the forward pass, fused attention).

        The graph comes from the weights this Predictor holds, so a caller who checked those weights (serving
        checks them against the run's signed record) serves nothing unchecked. Before it is returned it is
        compared with the torch model on ``check_rows`` random token sequences of every length up to
        ``max_length`` (``seed``), padded in mixed batches: any logit further than ``tolerance`` from torch's,
        or any other top class, is a ConfigError. ``model_dir``, labels, tokenizer and options are this one's.
        """
        import copy
        import tempfile

        from trustfm.models.onnx_export import export_onnx
        from trustfm.models.onnx_session import OnnxClassifier

        if self.format != "torch":
            raise ConfigError(f"only a torch model is exported to ONNX at start-up; this one is {self.format}")
        with tempfile.TemporaryDirectory(prefix="trustfm-onnx-") as folder:
            graph = OnnxClassifier(export_onnx(self.model, self.tokenizer, Path(folder) / "model.onnx"),
                                   spinning=not self.share_cpu)
        exported = copy.copy(self)
        exported.model, exported.onnx, exported.format = None, graph, "onnx"
        encoded = self._check_inputs(check_rows, seed)
        expected, _ = self._torch_outputs(encoded)
        got, _ = exported._onnx_outputs(encoded)
        gap = float(np.abs(expected - got).max()) if len(got) else 0.0
        if gap > tolerance or (expected.argmax(1) != got.argmax(1)).any():
            raise ConfigError(f"the ONNX export of {self.model_dir} differs from the torch model (largest logit "
                              f"difference {gap:.2g}, tolerance {tolerance:g}); serve it with backend: torch")
        return exported

    def _check_inputs(self, rows: int, seed: int):
        """Random inputs of every size the model takes: token sequences (lengths 1..max_length) or images."""
        from trustfm.data.batching import EncodedTexts

        rng = np.random.default_rng(seed)
        if self.inputs is not None:
            size = self.inputs.config.size
            return self.inputs.encode(list(rng.integers(0, 256, (rows, size, size, 3), dtype=np.uint8)))
        # ordinary tokens of any vocabulary (a small one's too), wrapped the way the tokenizer wraps a text (a
        # decoder's tokenizer adds nothing)
        special = set(self.tokenizer.all_special_ids)
        ordinary = np.array([i for i in range(self.tokenizer.vocab_size) if i not in special], dtype=np.int64)
        empty = list(self.tokenizer("")["input_ids"])  # the special tokens around every text ([CLS] ... [SEP])
        starts = {self.tokenizer.cls_token_id, self.tokenizer.bos_token_id} - {None}
        prefix = empty[:1] if empty and empty[0] in starts else []
        suffix = empty[len(prefix):]
        lengths = np.linspace(1, self.max_length - len(empty), rows).astype(int)
        ids = [np.array([*prefix, *rng.choice(ordinary, n), *suffix], dtype=np.int64) for n in lengths]
        return EncodedTexts(input_ids=[ids[i] for i in rng.permutation(rows)], max_length=self.max_length,
                            truncated=np.zeros(rows, dtype=bool))

    def fast_predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """``predict_proba`` in bf16 where the CPU has bf16 kernels: for search loops whose result is re-checked in fp32."""
        return self.predict_proba(texts, precision="auto")
