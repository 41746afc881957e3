"""Trust features as components: each wraps the run's data or adds callbacks; the training entry point never branches.

A component is built from the run config when the config turns its feature on
(:func:`trust_components`). :func:`~trustfm.train.run.train_run` then calls the
same hooks on every component, in order:

1. ``wrap_data(setup, data) -> data`` — all splits, before anything else reads
   them (redaction).
2. ``wrap_train(setup, train) -> (train, rows added)`` — the training rows only,
   before tokenisation (augmentation).
3. ``callbacks(setup) -> list[Callback]`` — training-loop callbacks, once the
   model is built and the training rows are final (DP-SGD, re-weighting,
   adversarial training, tracking).
4. ``trainer_options(setup) -> dict`` — keyword options for the
   :class:`~trustfm.train.FineTuner` (the checkpoint encryption key).
5. ``after_fit(setup)`` — record what the feature did (epsilon spent).

``abandon_unstarted(setup)`` runs instead of the rest when set-up fails before
the first training step: the component undoes what it claimed (the DP
reservation in the privacy ledger).

``setup.record`` is the run's ``run.json`` being written
(:class:`~trustfm.runs.RunRecord`); a component adds its own block to it as an
attribute (``setup.record.privacy = {...}``). A new feature (federated client, compression-aware training)
is a new component, not an edit of ``train_run``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trustfm.config import RunConfig
from trustfm.errors import ConfigError
from trustfm.fileio import write_json_atomic
from trustfm.runs import RunPaths, RunRecord
from trustfm.train.callbacks import Callback
from trustfm.train.ledger import run_key


@dataclass
class TrainSetup:
    """What components see of a run being set up; filled in as set-up proceeds."""

    config: RunConfig
    paths: RunPaths
    record: RunRecord  # run.json as it is being written
    resume: bool = False
    data: Any = None  # PreparedData
    train: Any = None  # the final training rows (LabelledTexts), after augmentation and the length policy
    train_label_ids: Any = None  # int64 (n_train,)
    model: Any = None
    tokenizer: Any = None  # None for an image model
    inputs: Any = None  # the model's TextInputs or ImageInputs (trustfm.models.inputs)
    extra: dict = field(default_factory=dict)


class TrustComponent:
    """No-op hooks; a component overrides the ones it needs. ``adds_to_log``: its callbacks enrich the
    step/epoch records, so they run before the metrics logger writes them."""

    name = "component"
    adds_to_log = False

    def wrap_data(self, setup: TrainSetup, data):
        return data

    def wrap_train(self, setup: TrainSetup, train) -> tuple[Any, int]:
        return train, 0

    def callbacks(self, setup: TrainSetup) -> list[Callback]:
        return []

    def trainer_options(self, setup: TrainSetup) -> dict:
        return {}

    def after_fit(self, setup: TrainSetup) -> None: ...

    def abandon_unstarted(self, setup: TrainSetup) -> None:
        """The run failed before its first training step: undo what the component claimed (a reservation)."""


class Redaction(TrustComponent):
    """``privacy.redact``: personal data replaced in every split before tokenisation; counts in ``results/pii.json``."""

    name = "redaction"

    def wrap_data(self, setup, data):
        from trustfm.data.redaction import redact_parts

        return redact_parts(data, setup.config.privacy, counts_to=setup.paths.result("pii"))


class CounterfactualAugmentation(TrustComponent):
    """``fairness.mitigation: counterfactual_augmentation``: identity-swapped copies of training texts."""

    name = "counterfactual_augmentation"

    def wrap_train(self, setup, train):
        from trustfm.data.augment import counterfactual_augment

        fair = setup.config.fairness
        return counterfactual_augment(train, axes=fair.counterfactual_axes, variants=fair.counterfactual_variants,
                                      seed=setup.config.seed)


class GroupRebalancing(TrustComponent):
    """``fairness.mitigation: reweigh | balanced_sampling``: a callback over (group, label) cells."""

    name = "group_rebalancing"

    def callbacks(self, setup):
        from trustfm.train.fairness import mitigation_callbacks

        return mitigation_callbacks(setup.config.fairness, setup.train.groups, setup.train_label_ids,
                                    seed=setup.config.seed)


class PerturbationAugmentation(TrustComponent):
    """``robustness.augmentation``: perturbed copies of a share of the training rows."""

    name = "perturbation_augmentation"

    def wrap_train(self, setup, train):
        from trustfm.data.augment import perturbation_augment

        aug = setup.config.robustness.augmentation
        return perturbation_augment(train, tests=aug.tests, share=aug.share, seed=setup.config.seed)


class RobustTraining(TrustComponent):
    """``robustness.embedding_noise`` / ``robustness.adversarial_training``: callbacks on the loss."""

    name = "robust_training"

    def callbacks(self, setup):
        from trustfm.train.robust import robustness_callbacks

        return robustness_callbacks(setup.config.robustness, seed=setup.config.seed,
                                    modality=setup.config.data.modality)


class DifferentialPrivacy(TrustComponent):
    """``privacy.dp``: DP-SGD under a dataset budget kept in the privacy ledger.

    Checks the budget before the first step, restricts the trainable parameters,
    and after training records the epsilon spent in ``run.json``,
    ``results/privacy.json`` and the ledger.
    """

    name = "differential_privacy"
    adds_to_log = True

    def __init__(self):
        self.dpsgd = None
        self.ledger = None

    def callbacks(self, setup):
        from trustfm.train.ledger import PrivacyLedger, ledger_path
        from trustfm.train.privacy import DPSGD, default_delta, set_dp_trainable

        config, model = setup.config, setup.model
        dp = config.privacy.dp
        canary_rows = setup.extra.get("canary_rows", 0)  # ride along: the plan is the run's without them
        n_train = len(setup.train) - canary_rows
        delta = dp.delta if dp.delta is not None else default_delta(n_train)
        if delta >= 1.0 / n_train:
            raise ConfigError(f"privacy.dp.delta {delta:g} is not below 1/N = {1.0 / n_train:g} ({n_train} training rows)")
        train_hash = setup.data.file_hashes[str(config.data.train)]
        # write-ahead: check and reserve the planned epsilon in one locked step, before the first step
        # (a resumed run finds its reservation and keeps it)
        self.ledger = PrivacyLedger(ledger_path(config.privacy.ledger))
        self.ledger.reserve(run_dir=run_key(setup.paths.root), data_sha256=train_hash, dataset=str(config.data.train),
                            epsilon=dp.epsilon, delta=delta, accountant=dp.accountant,
                            total_budget=config.privacy.total_epsilon)
        trainable = set_dp_trainable(model, dp)
        setup.record.privacy = {
            "dp": True, "target_epsilon": dp.epsilon, "delta": delta, "accountant": dp.accountant,
            "max_grad_norm": dp.max_grad_norm, "trainable": dp.trainable, "trainable_parameters": trainable,
            "clipping": dp.clipping, "data_sha256": train_hash,
        }
        setup.record.save(setup.paths)
        self.dpsgd = DPSGD(epsilon=dp.epsilon, delta=delta, max_grad_norm=dp.max_grad_norm, n_train=n_train,
                           accountant=dp.accountant, clipping=dp.clipping, extra_rows=canary_rows)
        setup.extra["dpsgd"] = self.dpsgd  # data parallelism combines its noisy gradients across processes
        return [self.dpsgd]

    def abandon_unstarted(self, setup):
        if self.ledger is not None:
            self.ledger.release(run_key(setup.paths.root), reason="the run stopped before its first training step")

    def after_fit(self, setup):
        from trustfm.train.privacy import DPAccounting

        config, record = setup.config, setup.record
        spent = self.dpsgd.epsilon_spent()
        self.ledger.settle(run_key(setup.paths.root), spent)
        privacy = {**record.privacy, "epsilon": spent, "noise_multiplier": self.dpsgd.noise_multiplier,
                   "sample_rate": self.dpsgd.sample_rate, "ledger": str(self.ledger.path)}
        privacy["dataset_epsilon_spent"] = self.ledger.spent(privacy["data_sha256"])
        privacy["dataset_total_epsilon"] = config.privacy.total_epsilon
        record.privacy = privacy
        write_json_atomic(setup.paths.result("privacy"), DPAccounting(**privacy).model_dump(mode="json"))


class PrivacyCanaries(TrustComponent):
    """``privacy.audit``: canaries for the one-run privacy audit (:mod:`trustfm.train.canaries`): included input
    canaries join the training rows, included gradient canaries join DP-SGD's clipped sums."""

    name = "privacy_canaries"

    def __init__(self):
        self.drawn: dict = {}

    def wrap_train(self, setup, train):
        import os

        from trustfm.train.canaries import insert_canaries

        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ConfigError("privacy.audit: canaries are inserted by one training process; train without "
                              "torchrun (--nproc 1)")
        before = len(train)
        train, self.drawn = insert_canaries(setup, train, setup.config.privacy.audit)
        setup.extra["canary_rows"] = len(train) - before  # appended last: DP-SGD samples them, plans without them
        # the included canaries are not counted as added rows: their number is kept out of run.json's row counts
        return train, 0

    def callbacks(self, setup):
        from trustfm.train.canaries import gradient_canary_callback

        return gradient_canary_callback(setup, self.drawn)

    def after_fit(self, setup):
        canaries = setup.extra["canaries"]
        setup.record.privacy_audit = canaries.run_record()


class Tracking(TrustComponent):
    """``train.tracking``: TensorBoard and/or MLflow loggers."""

    name = "tracking"

    def callbacks(self, setup):
        from trustfm.train.callbacks import MlflowLogger, TensorBoardLogger

        config = setup.config
        out: list[Callback] = []
        if config.train.tracking.tensorboard:
            out.append(TensorBoardLogger(setup.paths.root / "logs" / "tensorboard"))
        if config.train.tracking.mlflow:
            out.append(MlflowLogger({"seed": config.seed,
                                     **config.train.model_dump(exclude={"tracking", "early_stopping"})}))
        return out


class CheckpointEncryption(TrustComponent):
    """``privacy.encrypt_checkpoints``: resumable checkpoints written AES-256-GCM encrypted."""

    name = "checkpoint_encryption"

    def trainer_options(self, setup):
        from trustfm.encryption import load_key

        return {"encryption_key": load_key(setup.config.privacy.key_file)}


class WeightAveragingComponent(TrustComponent):
    """``train.ema_decay``: validation and the saved model use a moving average of the weights
    (:mod:`trustfm.train.averaging`); ``run.json`` says so."""

    name = "weight_averaging"

    def __init__(self):
        self.averaging = None

    def callbacks(self, setup):
        from trustfm.train.averaging import WeightAveraging

        self.averaging = WeightAveraging(setup.config.train.ema_decay)
        return [self.averaging]

    def after_fit(self, setup):
        setup.record.weight_averaging = {"method": "ema", "decay": self.averaging.decay,
                                         "steps_averaged": self.averaging.updates}


def trust_components(config: RunConfig) -> list[TrustComponent]:
    """The components the config turns on, in the order their hooks run.

    The order is part of a run's identity: callbacks' checkpointed state is
    restored by position, and augmentations compose (counterfactual copies are
    perturbed too).
    """
    fair, robust, privacy = config.fairness, config.robustness, config.privacy
    components: list[TrustComponent] = []
    if privacy.redact:
        components.append(Redaction())
    if fair.mitigation == "counterfactual_augmentation":
        components.append(CounterfactualAugmentation())
    if robust.augmentation is not None:
        components.append(PerturbationAugmentation())
    if privacy.dp is not None:
        components.append(DifferentialPrivacy())
    if privacy.audit is not None:  # after DP-SGD: its callback adds to the gradients DP-SGD has just written
        components.append(PrivacyCanaries())
    if config.train.tracking.tensorboard or config.train.tracking.mlflow:
        components.append(Tracking())
    if fair.mitigation in ("reweigh", "balanced_sampling"):
        components.append(GroupRebalancing())
    if robust.embedding_noise > 0 or robust.adversarial_training is not None:
        components.append(RobustTraining())
    if privacy.encrypt_checkpoints:
        components.append(CheckpointEncryption())
    if config.train.ema_decay is not None:
        components.append(WeightAveragingComponent())
    from trustfm.train.distributed import DataParallel, world

    here = world()
    if here.size > 1:  # under torchrun; last, so that its callback sees every other one's batches and gradients
        components.append(DataParallel(here))
    return components
