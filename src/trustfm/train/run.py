"""``train_run``: fine-tune a run folder's model from its config; trust features join as components."""

from __future__ import annotations

import logging
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

from trustfm.config import RunConfig, dump_config
from trustfm.errors import ConfigError, DataError, TrustfmError
from trustfm.fileio import write_lines_atomic
from trustfm.runs import RunPaths, RunRecord, now_iso, package_versions

log = logging.getLogger("trustfm.train")
TRAIN_LOCK = ".train.lock"  # held (flock) by the one process training a run folder


def write_rejections(path: Path, rejected: Sequence) -> None:
    """One JSON line per dropped row (file, row, column, reason); the text is never written."""
    import json

    write_lines_atomic(path, (json.dumps(r.as_dict()) for r in rejected))


@contextmanager
def _discard_unstarted_run(paths: RunPaths, *, fresh: bool, created: bool):
    """On a user error (bad config or data) while a fresh run is set up, remove what the run wrote: the whole
    folder when this run created it, else only the run's own files (anything else there was the user's)."""
    try:
        yield
    except TrustfmError:
        if fresh:
            if created:
                shutil.rmtree(paths.root, ignore_errors=True)
            else:
                for path in (paths.run_info, paths.config, paths.rejected, paths.result("pii"),
                             paths.root / TRAIN_LOCK):
                    path.unlink(missing_ok=True)
        raise


@contextmanager
def _abandon_on_failure(components, setup):
    try:
        yield
    except BaseException:
        for component in components:
            component.abandon_unstarted(setup)
        raise


def train_run(config: RunConfig, *, resume: bool = False, show_progress: bool = True,
              extra_components: Sequence = ()) -> RunPaths:
    """Fine-tune and keep the best checkpoint in ``RUN_DIR/model``; returns the run's paths.

    With ``resume``, ``config`` must be the run's saved config; training continues
    from the last completed epoch and ends with the same metrics as an
    uninterrupted run. Evaluation on the test split is a separate verb
    (:func:`trustfm.audit.run_performance.evaluate_run`), which ``trustfm train`` runs next.

    ``extra_components``: :class:`~trustfm.train.components.TrustComponent` instances to run after the ones
    the config turns on (a later stage's training concern, e.g. a federated client).
    """
    from trustfm.models.predictor import quiet_transformers

    quiet_transformers()
    paths = RunPaths(Path(config.output_dir))
    created = not paths.root.exists()
    with _training_lock(paths):
        return _train_locked(config, paths, created=created, resume=resume, show_progress=show_progress,
                             extra_components=extra_components)


@contextmanager
def _training_lock(paths: RunPaths):
    """One training process per run folder: a second ``train`` or ``--resume`` while one runs is refused."""
    from trustfm.fileio import exclusive_lock

    with exclusive_lock(paths.root / TRAIN_LOCK, blocking=False, target=paths.root) as taken:
        if not taken:
            raise ConfigError(f"run folder {paths.root} is being trained by another process; wait for it")
        yield


def _train_locked(config: RunConfig, paths: RunPaths, *, created: bool, resume: bool, show_progress: bool,
                  extra_components: Sequence) -> RunPaths:
    from trustfm.data.prepare import prepare_data
    from trustfm.metrics import quick_metrics
    from trustfm.models.inputs import base_model_record, build_model
    from trustfm.models.loading import model_weight_hashes
    from trustfm.train.callbacks import JsonlLogger
    from trustfm.train.components import TrainSetup, trust_components
    from trustfm.train.lora import merged_copy
    from trustfm.train.loop import CHECKPOINT_FILE, FineTuner, seed_everything

    if resume:
        info = RunRecord.load(paths)
        if not (paths.checkpoints / CHECKPOINT_FILE).exists():
            # killed before its first checkpoint: nothing trained is kept, so it starts again from the start
            log.warning("%s: no checkpoint yet; training starts from the beginning", paths.root)
            resume_from = None
        else:
            resume_from = paths.checkpoints
    else:
        resume_from = None
        if paths.run_info.exists():
            unfinished = RunRecord.load(paths).status != "complete"
            raise ConfigError(
                f"run folder {paths.root} already holds "
                + ("an unfinished run (was it killed?): continue it with `trustfm train --resume "
                   f"{paths.root}`, or delete the folder" if unfinished else
                   "a finished run: choose another output_dir, or delete it")
            )
        paths.root.mkdir(parents=True, exist_ok=True)
        dump_config(config, paths.config)
        info = RunRecord(status="running", started=now_iso(), seed=config.seed)
    info.versions = package_versions(config.data.modality)
    info.save(paths)
    components = [*trust_components(config), *extra_components]
    setup = TrainSetup(config=config, paths=paths, record=info, resume=resume)
    # a user error before training starts leaves no half-made run behind to block the corrected rerun, and any
    # failure before the first step undoes what components claimed (a DP reservation) -- unless the run resumes
    # from a checkpoint, whose noisy updates already spent what was reserved
    undo = components if resume_from is None else ()
    with _discard_unstarted_run(paths, fresh=not resume, created=created), _abandon_on_failure(undo, setup):
        data = prepare_data(config.data, seed=config.seed)
        if len(data.train) == 0 or len(data.validation) == 0:
            raise DataError("training needs training rows and a validation split: give data.train, and "
                            "data.validation or a data.split.validation share above 0")
        for component in components:
            data = component.wrap_data(setup, data)
        setup.data = data
        if resume and info.data_hashes and info.data_hashes != data.file_hashes:
            raise DataError("data files changed since this run started; cannot resume on different data")
        seed_everything(config.seed)
        model, inputs = build_model(config.model, config.data, data.label_names, seed=config.seed)
        setup.model, setup.tokenizer, setup.inputs = model, inputs.tokenizer, inputs
        # a text length policy acts on every split before augmentation: the counts add up per split
        encoded = inputs.encode_splits(data, config.data)
        rejected = list(data.rejected)
        train, augmented = data.train, 0
        for component in components:
            train, added = component.wrap_train(setup, train)
            augmented += added
        # augmented rows are tokenised once more; their copies may outgrow max_length and are cut, never dropped
        # (they are not the user's rows)
        train_enc = encoded["train"] if train is data.train else inputs.encode(train.texts, augment=True)
        validation, val_enc = data.validation, encoded["validation"]
        setup.train, setup.train_label_ids = train, data.label_ids(train)
        write_rejections(paths.rejected, rejected)
        info.data_hashes = data.file_hashes
        info.base_model = base_model_record(config.model, config.data)
        info.label_names = data.label_names
        # read - rejected = train + validation + test (augmented rows come on top of train)
        info.rows = {"read": data.rows_read, "rejected": len(rejected), **data.counts(), "augmented": augmented}
        info.fairness_mitigation = config.fairness.mitigation
        info.robust_training = config.robustness.model_dump(mode="json", exclude_defaults=True)
        info.truncated = {role: int(enc.truncated.sum()) for role, enc in encoded.items()}
        info.save(paths)
        # components whose callbacks add to the step/epoch records run before the logger writes them
        callbacks = [cb for c in components if c.adds_to_log for cb in c.callbacks(setup)]
        callbacks.append(JsonlLogger(paths.metrics_log))
        callbacks += [cb for c in components if not c.adds_to_log for cb in c.callbacks(setup)]
        options = {k: v for c in components for k, v in c.trainer_options(setup).items()}
        trainer = FineTuner(config.train, seed=config.seed, callbacks=callbacks, show_progress=show_progress,
                            **options)
    extra = {"max_length": config.data.max_length, "base_model": config.model.name_or_path}
    state = trainer.fit(
        model,
        train_enc,
        setup.train_label_ids,
        val_enc,
        data.label_ids(validation),
        pad_id=inputs.pad_id,
        checkpoint_dir=paths.checkpoints,
        validation_metrics=quick_metrics,
        # LoRA adapters (privacy.dp.trainable: lora) are folded into the weights: the saved model is a plain one
        save_best=lambda m: inputs.save(merged_copy(m), paths.model, label_names=data.label_names, extra=extra),
        resume=resume_from is not None,
    )
    for component in components:
        component.after_fit(setup)
    info.training = {
        "epochs_completed": state.epoch,
        "best_epoch": state.best_epoch,
        "best_validation_metric": state.best_metric,
        "stopped_early": state.stopped_early,
        "steps": state.global_step,
        "train_seconds": state.train_seconds,
        "train_samples_per_second": state.train_samples / state.train_seconds if state.train_seconds else None,
        "threads": state.threads,  # set train.num_threads to it to repeat the run bit for bit
    }
    info.model_sha256 = model_weight_hashes(paths.model)
    info.status = "complete"
    info.finished = now_iso()
    info.save(paths)
    if not config.train.keep_checkpoints:
        # the resumable state (optimiser moments: twice the model's size) is of no use once the run is complete
        shutil.rmtree(paths.checkpoints, ignore_errors=True)
    return paths

