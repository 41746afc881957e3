"""The main job, top-down: config → data → model → train → audit.

Each function is one verb on a run folder; the CLI commands are thin wrappers
around them.
"""

from __future__ import annotations

import logging
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

import numpy as np

from trustfm.config import RunConfig, dump_config, load_config
from trustfm.errors import ConfigError, DataError, TrustfmError
from trustfm.runs import RunPaths, existing_run, now_iso, package_versions, read_json, write_json_atomic

log = logging.getLogger("trustfm")


def _quiet_transformers() -> None:
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _encode_part(part, tokenizer, config: RunConfig, rejected: list):
    from trustfm.data.batching import encode_texts
    from trustfm.data.prepare import apply_length_policy

    encoded = encode_texts(tokenizer, part.texts, config.data.max_length)
    part, encoded, dropped = apply_length_policy(
        part, encoded, config.data.on_problem.too_long, config.data.text_column
    )
    rejected.extend(dropped)
    return part, encoded


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
                for path in (paths.run_info, paths.config, paths.rejected, paths.result("pii")):
                    path.unlink(missing_ok=True)
        raise


def train_run(config: RunConfig, *, resume: bool = False, show_progress: bool = True) -> RunPaths:
    """Fine-tune, keep the best checkpoint, evaluate it on the test split.

    With ``resume``, ``config`` must be the run's saved config; training continues
    from the last completed epoch and ends with the same metrics as an
    uninterrupted run.
    """
    from trustfm.data.prepare import file_sha256, prepare_data
    from trustfm.models import build_classifier, save_classifier
    from trustfm.models.loading import resolve_model_dir, weight_files
    from trustfm.audit.performance import quick_metrics
    from trustfm.train import FineTuner, JsonlLogger
    from trustfm.train.callbacks import MlflowLogger, TensorBoardLogger
    from trustfm.train.fairness import mitigation_callbacks
    from trustfm.train.lora import merged_copy
    from trustfm.train.robust import robustness_callbacks
    from trustfm.train.loop import seed_everything

    _quiet_transformers()
    paths = RunPaths(Path(config.output_dir))
    created = not paths.root.exists()
    if resume:
        info = read_json(paths.run_info)
    else:
        if paths.run_info.exists():
            raise ConfigError(
                f"run folder {paths.root} already holds a run: choose another output_dir, "
                "delete it, or continue it with --resume"
            )
        paths.root.mkdir(parents=True, exist_ok=True)
        dump_config(config, paths.config)
        info = {"status": "running", "started": now_iso(), "seed": config.seed}
    info["versions"] = package_versions()
    write_json_atomic(paths.run_info, info)
    # a user error before training starts leaves no half-made run behind to block the corrected rerun
    with _discard_unstarted_run(paths, fresh=not resume, created=created):
        data = redact_parts(prepare_data(config.data, seed=config.seed), config, counts_to=paths.result("pii"))
        if resume and info.get("data_hashes") and info["data_hashes"] != data.file_hashes:
            raise DataError("data files changed since this run started; cannot resume on different data")
        seed_everything(config.seed)
        model, tokenizer = build_classifier(config.model, data.label_names)
        rejected = list(data.rejected)
        train_part, augmented = data.train, 0
        if config.fairness.mitigation == "counterfactual_augmentation":
            from trustfm.data.augment import counterfactual_augment

            train_part, augmented = counterfactual_augment(
                data.train, axes=config.fairness.counterfactual_axes,
                variants=config.fairness.counterfactual_variants, seed=config.seed,
            )
        if config.robustness.augmentation is not None:
            from trustfm.data.augment import perturbation_augment

            train_part, perturbed = perturbation_augment(
                train_part, tests=config.robustness.augmentation.tests, share=config.robustness.augmentation.share,
                seed=config.seed,
            )
            augmented += perturbed
        train, train_enc = _encode_part(train_part, tokenizer, config, rejected)
        validation, val_enc = _encode_part(data.validation, tokenizer, config, rejected)
        write_rejections(paths.rejected, rejected)
        base_dir = resolve_model_dir(config.model.name_or_path)
        info.update(
            data_hashes=data.file_hashes,
            base_model={
                "name_or_path": config.model.name_or_path,
                "path": str(base_dir),
                "weights_sha256": {p.name: file_sha256(p) for p in weight_files(base_dir)},
            },
            label_names=data.label_names,
            rows={**data.counts(), "rejected": len(rejected), "augmented": augmented},
            fairness_mitigation=config.fairness.mitigation,
            robust_training=config.robustness.model_dump(mode="json", exclude_defaults=True),
            truncated={"train": int(train_enc.truncated.sum()), "validation": int(val_enc.truncated.sum())},
        )
        write_json_atomic(paths.run_info, info)

        dp = None
        if config.privacy.dp is not None:
            dp = _dp_callback(config, data, info, paths, n_train=len(train), model=model, resume=resume)
        callbacks = ([dp] if dp else []) + [JsonlLogger(paths.metrics_log)]
        if config.train.tracking.tensorboard:
            callbacks.append(TensorBoardLogger(paths.root / "logs" / "tensorboard"))
        if config.train.tracking.mlflow:
            callbacks.append(MlflowLogger({"seed": config.seed, **config.train.model_dump(exclude={"tracking", "early_stopping"})}))
        callbacks += mitigation_callbacks(config.fairness, train.groups, data.label_ids(train), seed=config.seed)
        callbacks += robustness_callbacks(config.robustness, seed=config.seed)
        key = None
        if config.privacy.encrypt_checkpoints:
            from trustfm.encryption import load_key

            key = load_key(config.privacy.key_file)
        trainer = FineTuner(config.train, seed=config.seed, callbacks=callbacks, show_progress=show_progress,
                            encryption_key=key)
    extra = {"max_length": config.data.max_length, "base_model": config.model.name_or_path}
    state = trainer.fit(
        model,
        train_enc,
        data.label_ids(train),
        val_enc,
        data.label_ids(validation),
        pad_id=tokenizer.pad_token_id,
        checkpoint_dir=paths.checkpoints,
        validation_metrics=quick_metrics,
        # LoRA adapters (privacy.dp.trainable: lora) are folded into the weights: the saved model is a plain one
        save_best=lambda m: save_classifier(merged_copy(m), tokenizer, paths.model, label_names=data.label_names,
                                            extra=extra),
        resume=resume,
    )
    if dp is not None:
        _record_dp(config, dp, info, paths)
    info.update(
        training={
            "epochs_completed": state.epoch,
            "best_epoch": state.best_epoch,
            "best_validation_metric": state.best_metric,
            "stopped_early": state.stopped_early,
            "steps": state.global_step,
            "train_seconds": state.train_seconds,
            "train_samples_per_second": state.train_samples / state.train_seconds if state.train_seconds else None,
        },
        model_sha256={p.name: file_sha256(p) for p in sorted(paths.model.glob("*.safetensors"))},
    )
    write_json_atomic(paths.run_info, info)
    evaluate_run(paths.root, show_progress=show_progress)
    info["status"] = "complete"
    info["finished"] = now_iso()
    write_json_atomic(paths.run_info, info)
    return paths


def _dp_callback(config: RunConfig, data, info: dict, paths: RunPaths, *, n_train: int, model, resume: bool):
    """The DP-SGD callback for this run, after checking the dataset's privacy budget in the ledger."""
    from trustfm.train.privacy import DPSGD, check_budget, default_delta, ledger_path, set_trainable

    dp = config.privacy.dp
    delta = dp.delta if dp.delta is not None else default_delta(n_train)
    if delta >= 1.0 / n_train:
        raise ConfigError(f"privacy.dp.delta {delta:g} is not below 1/N = {1.0 / n_train:g} ({n_train} training rows)")
    train_hash = data.file_hashes[str(config.data.train)]
    if not resume:
        check_budget(ledger_path(config.privacy.ledger), train_hash, dp.epsilon, config.privacy.total_epsilon,
                     dataset=str(config.data.train))
    for name, p in model.named_parameters():
        # The pooler is unused by our pooling (no per-example gradient would exist). The embedding tables stay
        # frozen: a per-example gradient of the 30522 x 384 word table is 47 MB per example, and position and
        # token-type embeddings are looked up with a batch dimension of 1, which Opacus cannot split per example.
        if any(part in f".{name}" for part in (".pooler.", ".embeddings.")):
            p.requires_grad_(False)
    trainable = set_trainable(model, dp.trainable, top_layers=dp.top_layers, lora_rank=dp.lora_rank,
                              lora_alpha=dp.lora_alpha)
    info["privacy"] = {"dp": True, "target_epsilon": dp.epsilon, "delta": delta, "accountant": dp.accountant,
                       "max_grad_norm": dp.max_grad_norm, "trainable": dp.trainable, "trainable_parameters": trainable,
                       "clipping": dp.clipping, "data_sha256": train_hash}
    write_json_atomic(paths.run_info, info)
    return DPSGD(epsilon=dp.epsilon, delta=delta, max_grad_norm=dp.max_grad_norm, n_train=n_train,
                 accountant=dp.accountant, clipping=dp.clipping)


def _record_dp(config: RunConfig, dp, info: dict, paths: RunPaths) -> None:
    """Epsilon actually spent: into run.json, results/privacy.json and the dataset's ledger."""
    from trustfm.train.privacy import append_ledger, ledger_path, read_ledger, spent_on

    spent = dp.epsilon_spent()
    ledger = ledger_path(config.privacy.ledger)
    privacy = {**info["privacy"], "epsilon": spent, "noise_multiplier": dp.noise_multiplier,
               "sample_rate": dp.sample_rate, "ledger": str(ledger)}
    append_ledger(ledger, {"data_sha256": privacy["data_sha256"], "dataset": str(config.data.train),
                           "run_dir": str(paths.root), "epsilon": spent, "delta": privacy["delta"],
                           "accountant": privacy["accountant"]})
    privacy["dataset_epsilon_spent"] = spent_on(read_ledger(ledger), privacy["data_sha256"])
    privacy["dataset_total_epsilon"] = config.privacy.total_epsilon
    info["privacy"] = privacy
    write_json_atomic(paths.result("privacy"), privacy)


def write_rejections(path: Path, rejected: Sequence) -> None:
    """One JSON line per dropped row (file, row, column, reason); the text is never written."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for r in rejected:
            handle.write(json.dumps(r.as_dict()) + "\n")


def load_run_config(run_dir: str | Path) -> RunConfig:
    return load_config(existing_run(run_dir).config)


def redact_texts(texts: Sequence[str], config: RunConfig) -> list[str]:
    """``texts`` with personal data replaced when the run's config says ``privacy.redact``, else unchanged."""
    if not config.privacy.redact:
        return list(texts)
    from trustfm.data.pii import PIIScanner

    return PIIScanner().redact(texts, mode=config.privacy.redact_mode)


def redact_parts(data, config: RunConfig, *, counts_to: Path | None = None):
    """With ``privacy.redact``, personal data in every split's texts replaced (Presidio) before anything sees them.

    ``counts_to``: write what was redacted (counts per split and type, never values) there as JSON.
    """
    if not config.privacy.redact:
        return data
    from trustfm.data.pii import PIIScanner

    scanner = PIIScanner()
    counts: dict[str, dict[str, int]] = {}
    for split, part in (("train", data.train), ("validation", data.validation), ("test", data.test)):
        part.texts, found = scanner.redact_counted(part.texts, mode=config.privacy.redact_mode)
        counts[split] = dict(found)
    if counts_to is not None:
        write_json_atomic(counts_to, {"pii_redaction": {"mode": config.privacy.redact_mode, "counts": counts,
                                                        "not_detected": scanner.not_detected}})
    return data


def prepare_run_data(runner: "RunModel", *, extra_group_columns: Sequence[str] = ()):
    """The run's train/validation/test rows again, checked against the hashes recorded at training."""
    from trustfm.data.prepare import prepare_data

    data_config = runner.config.data
    if extra_group_columns:
        columns = list(dict.fromkeys([*data_config.group_columns, *extra_group_columns]))
        data_config = data_config.model_copy(update={"group_columns": columns})
    data = redact_parts(prepare_data(data_config, seed=runner.config.seed), runner.config)
    info = read_json(runner.paths.run_info)
    if info.get("data_hashes") and info["data_hashes"] != data.file_hashes:
        raise DataError(f"data files changed since training (hashes differ from {runner.paths.run_info})")
    return data


def sample_test_texts(runner: "RunModel", max_texts: int) -> tuple[list[str], np.ndarray, str]:
    """Up to ``max_texts`` test-split rows (validation if there is no test split), drawn with the run's seed.

    Returns (texts, gold label ids (n,), a description of the sample for results).
    """
    data = prepare_run_data(runner)
    part = data.test if len(data.test) else data.validation
    rows = np.random.default_rng(runner.config.seed).permutation(len(part))[:max_texts]
    return [part.texts[i] for i in rows], data.label_ids(part)[rows], f"{part.file} ({len(rows)} test texts)"


def evaluate_run(
    run_dir: str | Path, *, data_path: str | Path | None = None, show_progress: bool = False
):
    """Evaluate the run's best model on its test split (or on ``data_path``).

    Writes ``results/performance.json`` (test split) or
    ``results/performance-<file stem>.json`` and returns the
    :class:`~trustfm.audit.performance.PerformanceResult`.
    """
    from trustfm.audit.performance import evaluate_predictions
    from trustfm.data.prepare import load_labelled

    runner = RunModel(run_dir)
    paths, config, names = runner.paths, runner.config, runner.label_names
    if data_path is None:
        data = prepare_run_data(runner)
        part, split, name = data.test, "test", "performance"
        if len(part) == 0:
            part, split = data.validation, "validation"
    else:
        part = load_labelled(Path(data_path), config.data, known_labels=names)
        part.texts = redact_texts(part.texts, config)
        split, name = str(data_path), f"performance-{Path(data_path).stem}"
    if len(part) == 0:
        raise DataError("no rows to evaluate", file=part.file)
    started = time.perf_counter()
    proba = runner.predict_proba(part.texts, show_progress=show_progress)
    index = {n: i for i, n in enumerate(names)}
    y_true = np.fromiter((index[x] for x in part.labels), dtype=np.int64, count=len(part))
    result = evaluate_predictions(
        y_true,
        proba,
        names,
        split=split,
        bootstrap_samples=config.evaluate.bootstrap_samples,
        confidence=config.evaluate.confidence,
        n_bins=config.evaluate.calibration_bins,
        seed=config.seed,
    )
    log.info("evaluated %d rows in %.1fs", len(part), time.perf_counter() - started)
    write_json_atomic(paths.result(name), result.model_dump(mode="json"))
    return result


class RunModel:
    """A run's best model, loaded once. ``predict_proba(texts)`` -> array (n, num_labels)."""

    def __init__(self, run_dir: str | Path):
        from trustfm.models import load_classifier

        _quiet_transformers()
        self.paths = existing_run(run_dir)
        self.config = load_config(self.paths.config)
        if not (self.paths.model / "trustfm_model.json").exists():
            raise ConfigError(f"{self.paths.root} has no trained model yet (train it, or resume it with --resume)")
        self.model, self.tokenizer, meta = load_classifier(self.paths.model)
        self.label_names: list[str] = meta["label_names"]
        self.last_truncated = np.zeros(0, dtype=bool)

    def logits_and_features(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Logits (n, num_labels) and pooled encoder features (n, hidden) for ``texts``."""
        from trustfm.data.batching import encode_texts
        from trustfm.models.inference import predict_logits_and_features

        encoded = encode_texts(self.tokenizer, list(texts), self.config.data.max_length)
        return predict_logits_and_features(self.model, encoded, pad_id=self.tokenizer.pad_token_id,
                                           batch_size=self.config.train.eval_batch_size)

    def predict_proba(self, texts: Sequence[str], *, show_progress: bool = False, precision: str = "fp32") -> np.ndarray:
        """Class probabilities (n, num_labels); ``precision`` as in :func:`trustfm.models.inference.precision_context`."""
        from trustfm.data.batching import encode_texts
        from trustfm.models.inference import predict_proba

        encoded = encode_texts(self.tokenizer, list(texts), self.config.data.max_length)
        self.last_truncated = encoded.truncated
        return predict_proba(
            self.model, encoded, pad_id=self.tokenizer.pad_token_id,
            batch_size=self.config.train.eval_batch_size, show_progress=show_progress, precision=precision,
        )

    def example_screen(self):
        """A :class:`~trustfm.data.pii.ExampleScreen` for the example texts an audit of this run saves."""
        from trustfm.data.pii import ExampleScreen

        return ExampleScreen(data_redacted=self.config.privacy.redact)

    def fast_predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """``predict_proba`` in bf16 where the CPU has bf16 kernels: for search loops whose result is re-checked in fp32."""
        return self.predict_proba(texts, precision="auto")


    def ood_scores(self, texts: Sequence[str]) -> tuple[np.ndarray, float | None] | None:
        """Mahalanobis OOD scores (n,) and the saved 95%-TPR threshold, or None when no detector is saved."""
        from trustfm.audit.ood import DETECTOR_FILE, MahalanobisDetector

        if not (self.paths.model / DETECTOR_FILE).exists():
            return None
        detector, meta = MahalanobisDetector.load(self.paths.model)
        _, features = self.logits_and_features(texts)
        return detector.score(features), meta.get("threshold_at_95_tpr")

    def rule_decisions(self, texts: Sequence[str], proba: np.ndarray, rules):
        """:class:`~trustfm.serve.rules.RuledPredictions` of ``rules`` over ``texts`` and their ``proba`` (n, k)."""
        from trustfm.serve.rules import apply_rules

        ood = self.ood_scores(texts) if rules.needs_ood else None
        return apply_rules(rules, texts, proba, self.label_names, ood_scores=None if ood is None else ood[0],
                           ood_threshold=None if ood is None else ood[1])


def predict_texts(
    run_dir: str | Path, texts: Sequence[str], *, rules_path: str | Path | None = None,
    members: Sequence[str | Path] = (), show_progress: bool = False,
) -> list[dict]:
    """Predicted label and class probabilities for each text, in input order.

    ``members``: other runs (same labels) whose probabilities are averaged with
    this run's (an ensemble). With ``rules_path`` (an output-rules YAML file),
    ``label`` is the rules' decision (None when a rule abstains), ``model_label``
    the model's own and ``rule`` the rule that decided (None: no rule matched);
    OOD rules use this run's detector.
    """
    from trustfm.audit.ensemble import average_proba

    runner = RunModel(run_dir)
    names = runner.label_names
    texts = redact_texts(texts, runner.config)  # a model trained on redacted text is served redacted text
    others = [RunModel(m) for m in members]
    for other in others:
        if other.label_names != names:
            raise ConfigError(f"ensemble member {other.paths.root} has labels {other.label_names}, not {names}")
    proba = runner.predict_proba(texts, show_progress=show_progress)
    truncated = runner.last_truncated
    if others:
        proba = average_proba([lambda t: proba, *(o.predict_proba for o in others)])(list(texts))
    out = [
        {
            "label": names[int(p.argmax())],
            "confidence": float(p.max()),
            "probabilities": {n: float(v) for n, v in zip(names, p)},
            "truncated": bool(t),
        }
        for p, t in zip(proba, truncated)
    ]
    if rules_path is not None:
        from trustfm.serve.rules import load_rules

        rules, _ = load_rules(rules_path)
        rules.check_labels(names, str(rules_path))
        ruled = runner.rule_decisions(texts, proba, rules)
        for item, label, model_label, rule in zip(out, ruled.labels, ruled.model_labels, ruled.rules):
            item.update(label=label, model_label=model_label, rule=rule)
    return out
