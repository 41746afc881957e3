"""``federate_run``: set up a run folder, run the rounds (simulation or a SuperLink), keep the final global model.

The server side of every round is :func:`run_server` — the ServerApp's ``main`` calls it on a SuperLink, the
simulation calls it in this process over :class:`~trustfm.federated.simulation.LocalGrid`. It writes what
``trustfm train`` writes (``model/``, ``run.json``, ``config.yaml``), so every later command accepts the run,
plus ``results/federated.json``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

from trustfm.config import RunConfig, dump_config
from trustfm.errors import ConfigError, TrustfmError
from trustfm.federated.result import ClientRecord, FederatedPrivacy, FederatedResult
from trustfm.fileio import write_json_atomic
from trustfm.runs import RunPaths, RunRecord, now_iso, package_versions

log = logging.getLogger("trustfm.federated")


def _check_config(config: RunConfig) -> None:
    if config.federated is None:
        raise ConfigError("the config has no federated: block (clients, rounds, strategy, ...): see "
                          "docs/federated.md")
    dp = config.privacy.dp
    if dp is not None and dp.trainable == "lora":
        raise ConfigError("privacy.dp.trainable: lora is not supported by trustfm federate (clients exchange "
                          "plain weights); use head, top_layers, bias or all")


def plan_privacy(config: RunConfig, *, rounds: int | None = None, example_epsilon: float | None = None,
                 example_delta: float | None = None) -> FederatedPrivacy | None:
    """The privacy a federated run gives after ``rounds`` rounds (default: all planned); None without DP.

    The ledger is charged the smaller of the client-level and example-level epsilons: a guarantee for all of
    one client's rows is also one for each of its rows.
    """
    from trustfm.federated.privacy import client_level_epsilon, default_client_delta

    fed, dp = config.federated, config.privacy.dp
    cdp = fed.client_dp
    if cdp is None and dp is None:
        return None
    rounds = fed.rounds if rounds is None else rounds
    out: dict = {}
    names = []
    if cdp is not None:
        delta = cdp.delta if cdp.delta is not None else default_client_delta(fed.clients)
        # server mode: Poisson sampling of clients at rate q amplifies; local mode: no credit (a client knows)
        rate = fed.fraction if cdp.mode == "server" else 1.0
        out.update(client_epsilon=client_level_epsilon(noise_multiplier=cdp.noise_multiplier, sample_rate=rate,
                                                       rounds=rounds, delta=delta),
                   client_planned_epsilon=client_level_epsilon(noise_multiplier=cdp.noise_multiplier,
                                                               sample_rate=rate, rounds=fed.rounds, delta=delta),
                   client_delta=delta, noise_multiplier=cdp.noise_multiplier, clipping_norm=cdp.clipping_norm,
                   sample_rate=rate)
        names.append(f"client-level ({cdp.mode})")
    if dp is not None:
        out.update(example_epsilon=dp.epsilon if example_epsilon is None else example_epsilon,
                   example_delta=example_delta if example_delta is not None else dp.delta)
        names.append("example-level")
    guarantee = " and ".join(names) if len(names) == 2 else (
        names[0] if cdp is not None else "example-level (DP-SGD in each client)")
    bounds = [v for v in (out.get("client_epsilon"), out.get("example_epsilon")) if v is not None]
    return FederatedPrivacy(guarantee=guarantee, ledger_epsilon=min(bounds), **out)


@contextmanager
def _in_process_server():
    """Flower stamps each message with the process's task identity; in simulation this process is the server.
    Flower's own INFO log (a summary of every record) is held back meanwhile: trustfm logs one line per round."""
    from flwr.common.constant import SUPERLINK_NODE_ID
    from flwr.supercore.task_identity import TaskIdentity

    saved = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    flower_log = logging.getLogger("flwr")
    level = flower_log.level
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, SUPERLINK_NODE_ID
    flower_log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = saved
        flower_log.setLevel(level)


def federate_run(config: RunConfig, *, superlink: str | None = None, show_progress: bool = True,
                 connect_timeout: float = 20.0) -> RunPaths:
    """Federated fine-tuning of ``config``; returns the finished run folder's paths.

    ``superlink``: the SuperLink's HTTP API address (``HOST:PORT``, its ``--port``, e.g. ``127.0.0.1:9091``); the run is
    submitted with ``flwr run`` and its SuperNodes train. None: simulation, every client in this process.
    Bad input (more clients than rows, alpha <= 0, a SuperLink that does not answer) fails before any round.
    """
    from trustfm._deps import optional_import
    from trustfm.data.prepare import prepare_data
    from trustfm.federated.client import client_shards
    from trustfm.models.loading import base_model_record
    from trustfm.models.predictor import quiet_transformers
    from trustfm.train.ledger import PrivacyLedger, ledger_path, run_key

    _check_config(config)
    optional_import("flwr", "federated")
    quiet_transformers()
    paths = RunPaths(Path(config.output_dir))
    if paths.run_info.exists():
        raise ConfigError(f"run folder {paths.root} already holds a run: choose another output_dir, or delete it")
    data = prepare_data(config.data, seed=config.seed)
    shards = client_shards(config, data)  # checks the partition before anything is written
    if superlink is not None:
        from trustfm.federated.deploy import check_reachable

        check_reachable(superlink, timeout=connect_timeout)
    paths.root.mkdir(parents=True, exist_ok=True)
    dump_config(config, paths.config)
    record = RunRecord(status="running", started=now_iso(), seed=config.seed, versions=package_versions(),
                       data_hashes=data.file_hashes, label_names=data.label_names,
                       base_model=base_model_record(config.model.name_or_path),
                       rows={"read": data.rows_read, "rejected": len(data.rejected), **data.counts(),
                             "augmented": 0})
    record.federated = {"mode": "deployment" if superlink else "simulation", "superlink": superlink,
                        **config.federated.model_dump(mode="json"),
                        "client_rows": [len(s.train) + len(s.holdout) for s in shards]}
    privacy = plan_privacy(config)
    if privacy is not None:
        # write-ahead, as trustfm train does: the planned epsilon is reserved before any update leaves a client
        train_hash = data.file_hashes[str(config.data.train)]
        ledger = PrivacyLedger(ledger_path(config.privacy.ledger))
        ledger.reserve(run_dir=run_key(paths.root), data_sha256=train_hash, dataset=str(config.data.train),
                       epsilon=privacy.ledger_epsilon, delta=privacy.client_delta or privacy.example_delta,
                       accountant="rdp", total_budget=config.privacy.total_epsilon)
        record.privacy = {"federated": privacy.model_dump(mode="json", exclude_none=True), "data_sha256": train_hash,
                          "ledger": str(ledger.path)}
    record.save(paths)
    if superlink is None:
        from trustfm.federated.flower_app import client_app, reset_client_cache
        from trustfm.federated.simulation import LocalGrid

        grid = LocalGrid(client_app, clients=config.federated.clients, run_config={"run-dir": str(paths.root)})
        reset_client_cache()
        try:
            with _in_process_server():
                run_server(grid, paths.root, mode="simulation")
        finally:
            reset_client_cache()
    else:
        from trustfm.federated.deploy import submit_run

        submit_run(paths.root, superlink, timeout=config.federated.rounds * config.federated.round_timeout + 600)
    if RunRecord.load(paths).status != "complete":
        raise TrustfmError(f"the federated run in {paths.root} did not finish; see the SuperLink's log")
    return paths


def _client_records(shards, final_eval: dict) -> list[ClientRecord]:
    out = []
    for s in shards:
        scores = final_eval.get(str(s.client_id), {})
        out.append(ClientRecord(client=s.client_id, train_rows=len(s.train), holdout_rows=len(s.holdout),
                                label_counts=dict(sorted(Counter(s.train.labels).items())), poisoned=s.poisoned,
                                source=s.source, accuracy=scores.get("accuracy"), macro_f1=scores.get("macro_f1")))
    return out


def run_server(grid, run_dir: Path, *, mode: str) -> FederatedResult:
    """Every round over ``grid``, then the run folder: final model, ``results/federated.json``, ``run.json``."""
    import numpy as np
    from flwr.app import ArrayRecord, ConfigRecord, MetricRecord

    from trustfm.config import load_config
    from trustfm.data.batching import encode_texts
    from trustfm.data.prepare import prepare_data
    from trustfm.federated.canaries import start_canary_clients
    from trustfm.federated.client import client_shards, float_state
    from trustfm.federated.strategy import TrustStrategy
    from trustfm.metrics import quick_metrics
    from trustfm.models import build_classifier, save_classifier
    from trustfm.models.inference import predict_proba
    from trustfm.models.loading import model_weight_hashes
    from trustfm.models.predictor import quiet_transformers
    from trustfm.train.ledger import PrivacyLedger, run_key
    from trustfm.train.loop import seed_everything

    quiet_transformers()
    started = time.perf_counter()
    paths = RunPaths(Path(run_dir))
    config = load_config(paths.config)
    fed = config.federated
    data = prepare_data(config.data, seed=config.seed)
    shards = client_shards(config, data)
    seed_everything(config.seed)
    model, tokenizer = build_classifier(config.model, data.label_names)
    val_enc = encode_texts(tokenizer, data.validation.texts, config.data.max_length)
    val_labels = data.label_ids(data.validation)
    validation: dict[int, dict] = {}

    def evaluate_global(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        model.load_state_dict(arrays.to_torch_state_dict(), strict=False)
        proba = predict_proba(model, val_enc, pad_id=tokenizer.pad_token_id, batch_size=config.train.eval_batch_size)
        validation[server_round] = scores = quick_metrics(val_labels, proba)
        # how constant the global model is: client-level DP noise can leave one that answers one class
        scores["majority_share"] = float(np.bincount(proba.argmax(axis=1)).max() / max(len(proba), 1))
        answered = f"; {len(strategy.rounds[-1].get('clients', []))} of {strategy.rounds[-1]['asked']} clients " \
                   "answered" if strategy.rounds else ""
        log.info("round %d/%d: validation accuracy %.4f, macro-F1 %.4f%s", server_round, fed.rounds,
                 scores["accuracy"], scores["macro_f1"], answered)
        return MetricRecord(scores)

    canary_clients = start_canary_clients(paths, config, model)
    strategy = TrustStrategy(config, canary_clients=canary_clients)
    labels = ConfigRecord({"labels": list(data.label_names)})
    initial = ArrayRecord(torch_state_dict=float_state(model))
    outcome = strategy.start(grid, initial, num_rounds=fed.rounds, timeout=fed.round_timeout,
                             train_config=labels, evaluate_config=ConfigRecord({"labels": list(data.label_names)}),
                             evaluate_fn=evaluate_global)
    final = outcome.arrays if outcome.arrays is not None else initial
    model.load_state_dict(final.to_torch_state_dict(), strict=False)
    save_classifier(model, tokenizer, paths.model, label_names=data.label_names,
                    extra={"max_length": config.data.max_length, "base_model": config.model.name_or_path})
    rounds = strategy.rounds
    for r in rounds:
        r["validation"] = validation.get(r["round"])
    completed = sum(1 for r in rounds if r.get("aggregated"))
    final_eval = rounds[-1].get("client_evaluation", {}) if rounds else {}
    accuracies = [m["accuracy"] for m in final_eval.values()]
    example_eps = [m["example-epsilon"] for r in rounds for m in r.get("client_train", {}).values()
                   if "example-epsilon" in m]
    privacy = plan_privacy(config, rounds=len(rounds), example_epsilon=max(example_eps) if example_eps else None)
    last = validation.get(max(validation)) if validation else {}
    result = FederatedResult(
        mode=mode, strategy=fed.strategy, clients=fed.clients, rounds_planned=fed.rounds, rounds_completed=completed,
        local_epochs=fed.local_epochs, fraction=fed.fraction, partition=fed.partition.model_dump(mode="json"),
        poison=fed.poison.model_dump(mode="json") if fed.poison else None,
        client_records=_client_records(shards, final_eval), rounds=rounds,
        validation_accuracy=last.get("accuracy"), validation_macro_f1=last.get("macro_f1"),
        validation_majority_share=last.get("majority_share"),
        worst_client_accuracy=min(accuracies) if accuracies else None,
        mean_client_accuracy=float(np.mean(accuracies)) if accuracies else None,
        client_accuracy_gap=max(accuracies) - min(accuracies) if accuracies else None,
        client_failures=sum(len(r.get("failed", [])) + len(r.get("evaluation_failed", [])) for r in rounds),
        privacy=privacy, seconds=time.perf_counter() - started)
    write_json_atomic(paths.result("federated"), result.model_dump(mode="json"))
    record = RunRecord.load(paths)
    if privacy is not None:
        ledger = PrivacyLedger(record.privacy["ledger"])
        ledger.settle(run_key(paths.root), privacy.ledger_epsilon)
        record.privacy = {**record.privacy, "federated": privacy.model_dump(mode="json", exclude_none=True),
                          "dataset_epsilon_spent": ledger.spent(record.privacy["data_sha256"]),
                          "dataset_total_epsilon": config.privacy.total_epsilon}
    record.training = {"rounds_completed": completed, "train_seconds": result.seconds,
                       "best_validation_metric": result.validation_macro_f1}
    if canary_clients is not None:
        record.privacy_audit = canary_clients.canaries.run_record()
    record.model_sha256 = model_weight_hashes(paths.model)
    record.status = "complete"
    record.finished = now_iso()
    record.save(paths)
    log.info("federated run complete: %s", paths.root)
    return result
