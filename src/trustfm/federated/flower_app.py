"""The Flower App: ``server_app`` and ``client_app`` on Flower's Message API.

``flwr run`` (through ``trustfm federate --superlink``) starts them on a SuperLink and its SuperNodes; the
simulation calls the same two objects in this process. Both find the run folder in the run config (``run-dir``).
A SuperNode says which client it is with its node config: ``partition-id`` (its share of the run's training
file) or ``data-file`` (its own file, with ``partition-id`` as its client number).

This module imports ``flwr`` at the top; nothing imports it unless it federates.
"""

from __future__ import annotations

import json
from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from trustfm.federated.strategy import CLIENT_ID, EXAMPLES

client_app = ClientApp()
server_app = ServerApp()
STATE_KEY = "trustfm"  # the client's own record between rounds (Context.state): its DP-SGD accountant history


class _ClientCache:
    """Per-process cache of client trainers (tokenised rows, one shared model object). It never changes a result:
    every message brings the global weights, which are loaded before the client trains or evaluates."""

    def __init__(self):
        self.trainers: dict[tuple, object] = {}
        self.models: dict[str, tuple] = {}
        self.shards: dict[str, list] = {}  # run folder -> every client's rows: prepared once for all simulated clients

    def trainer(self, context: Context, label_names: list[str]):
        from trustfm.config import load_config
        from trustfm.federated.client import ClientTrainer, client_shards, own_file_shard
        from trustfm.models import build_classifier
        from trustfm.models.predictor import quiet_transformers

        run_dir = Path(str(context.run_config["run-dir"]))
        client_id = int(context.node_config.get("partition-id", 0))
        data_file = context.node_config.get("data-file")
        key = (str(run_dir), client_id, data_file)
        if key not in self.trainers:
            quiet_transformers()
            config = load_config(run_dir / "config.yaml")
            if data_file:
                shard = own_file_shard(config, client_id=client_id, data_file=str(data_file), label_names=label_names)
            else:
                from trustfm.data.prepare import prepare_data

                if str(run_dir) not in self.shards:
                    self.shards[str(run_dir)] = client_shards(config, prepare_data(config.data, seed=config.seed))
                shards = self.shards[str(run_dir)]
                if not 0 <= client_id < len(shards):
                    from trustfm.errors import ConfigError

                    raise ConfigError(f"node config partition-id {client_id} is not in 0..{len(shards) - 1} "
                                      f"(federated.clients = {len(shards)})")
                shard = shards[client_id]
            model_key = json.dumps([config.model.model_dump(mode="json"), label_names])
            if model_key not in self.models:
                self.models[model_key] = build_classifier(config.model, label_names)
            self.trainers[key] = ClientTrainer(config, shard, model_and_tokenizer=self.models[model_key])
        return self.trainers[key]


_CACHE = _ClientCache()


def reset_client_cache() -> None:
    """Drop every cached client (a simulation starts with none: a long-lived process runs many)."""
    _CACHE.trainers.clear()
    _CACHE.models.clear()
    _CACHE.shards.clear()


def _labels(message: Message) -> list[str]:
    return list(message.content["config"]["labels"])


def _reply(message: Message, metrics: dict, arrays: ArrayRecord | None = None) -> Message:
    content = RecordDict({"metrics": MetricRecord(metrics)})
    if arrays is not None:
        content["arrays"] = arrays
    return Message(content=content, reply_to=message)


@client_app.train()
def train(message: Message, context: Context) -> Message:
    """One round of local training from the global weights in ``message``; replies with the new weights."""
    trainer = _CACHE.trainer(context, _labels(message))
    config = message.content["config"]
    own = context.state.config_records.get(STATE_KEY)
    dp_state = json.loads(str(own["dp-state"])) if own is not None and "dp-state" in own else None
    outcome = trainer.fit(message.content["arrays"].to_torch_state_dict(), server_round=int(config["server-round"]),
                          proximal_mu=float(config.get("proximal-mu", 0.0)), dp_state=dp_state)
    if outcome.dp_state is not None:
        context.state[STATE_KEY] = ConfigRecord({"dp-state": json.dumps(outcome.dp_state)})
    metrics = {**outcome.metrics, EXAMPLES: outcome.examples, CLIENT_ID: trainer.shard.client_id,
               "poisoned": int(trainer.shard.poisoned)}
    return _reply(message, metrics, ArrayRecord(torch_state_dict=outcome.state))


@client_app.evaluate()
def evaluate(message: Message, context: Context) -> Message:
    """The global weights' accuracy, macro-F1 and loss on this client's held-out rows."""
    trainer = _CACHE.trainer(context, _labels(message))
    scores = trainer.evaluate(message.content["arrays"].to_torch_state_dict())
    return _reply(message, {**scores, EXAMPLES: scores.pop("examples"), CLIENT_ID: trainer.shard.client_id})


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    """Run every round and write the run folder (``run-dir`` in the run config)."""
    from trustfm.federated.run import run_server

    run_server(grid, Path(str(context.run_config["run-dir"])), mode="deployment")
