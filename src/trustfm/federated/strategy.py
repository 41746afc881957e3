"""The server side of a round: Flower's aggregation rules, wrapped with sampling, client-level DP and a record.

:class:`TrustStrategy` is a Flower ``Strategy`` (Message API). It samples clients itself (seeded; Poisson with
``client_dp``, so the accountant's subsampling rate is the real one), hands aggregation to Flower's FedAvg,
FedProx, FedMedian, FedTrimmedAvg or Krum, or, with ``client_dp.mode: server``, clips the updates and adds the
noise itself (:func:`~trustfm.federated.privacy.private_mean`). Every round is recorded: who was asked, who
answered, who failed and why, the clients' training numbers and each client's accuracy on its own rows.

This module is Flower's side of trustfm (it imports ``flwr`` at the top); other modules import it inside the
functions that federate, so ``flwr`` stays an optional dependency.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterable

import numpy as np
from flwr.app import ArrayRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp.strategy import Strategy

from trustfm.config import RunConfig
from trustfm.errors import ConfigError

log = logging.getLogger("trustfm.federated")
CLIENT_ID = "client-id"
EXAMPLES = "num-examples"


def aggregation_rule(config: RunConfig):
    """Flower's Message-API strategy for ``federated.strategy`` (used for its ``aggregate_train``)."""
    from flwr.serverapp import strategy as flower

    fed = config.federated
    common = {"min_train_nodes": 1, "min_evaluate_nodes": 1, "min_available_nodes": 1}
    if fed.strategy == "fedavg":
        return flower.FedAvg(**common)
    if fed.strategy == "fedprox":
        return flower.FedProx(**common, proximal_mu=fed.proximal_mu)
    if fed.strategy == "fedmedian":
        return flower.FedMedian(**common)
    if fed.strategy == "fedtrimmedavg":
        return flower.FedTrimmedAvg(**common, beta=fed.trim_beta)
    if fed.strategy == "krum":
        return flower.Krum(**common, num_malicious_nodes=fed.krum_malicious)
    raise ConfigError(f"federated.strategy {fed.strategy!r} is not one of fedavg, fedprox, fedmedian, "
                      "fedtrimmedavg, krum")


class TrustStrategy(Strategy):
    """A Flower strategy (``start(grid, ...)`` runs the rounds) recording each round in ``self.rounds``.

    ``wait_for_clients_s``: how long round 1 waits for all ``federated.clients`` nodes to connect.
    ``canary_clients``: a :class:`~trustfm.federated.canaries.CanaryClients` whose sampled updates join the
    server's private mean each round (``privacy.audit``); what they sent is in no record.
    """

    def __init__(self, config: RunConfig, *, wait_for_clients_s: float = 120.0, canary_clients=None):
        fed = config.federated
        self.config = config
        # privacy.audit: made-up clients that join the private mean (trustfm.federated.canaries); never recorded
        self.canary_clients = canary_clients
        self.inner = aggregation_rule(config)
        self.wait_for_clients_s = wait_for_clients_s
        # client sampling: seeded for reproducible non-private runs; secret under client-level DP, whose guarantee
        # assumes nobody can predict who is sampled
        self.rng = np.random.default_rng(secrets.randbits(63) if fed.client_dp else config.seed)
        self.rounds: list[dict] = []
        self.node_clients: dict[int, int] = {}  # Flower node id -> client id, learnt from replies
        self._global: dict | None = None
        self._asked: list[int] = []
        self._sent: list = []  # this phase's messages

    # -- sampling --------------------------------------------------------------------------------------------
    def _nodes(self, grid) -> list[int]:
        nodes = sorted(grid.get_node_ids())
        if self.rounds or len(nodes) >= self.config.federated.clients:
            return nodes
        deadline = time.monotonic() + self.wait_for_clients_s
        while len(nodes) < self.config.federated.clients:
            if time.monotonic() > deadline:
                raise ConfigError(f"only {len(nodes)} of federated.clients = {self.config.federated.clients} "
                                  f"clients connected within {self.wait_for_clients_s:.0f} s; start the missing "
                                  "SuperNodes or lower federated.clients")
            time.sleep(0.5)
            nodes = sorted(grid.get_node_ids())
        return nodes

    def _sample(self, nodes: list[int]) -> list[int]:
        fed = self.config.federated
        if fed.fraction >= 1.0:
            return nodes
        if fed.client_dp is not None:  # Poisson: each client independently, the rate the accountant assumes
            return [n for n in nodes if self.rng.random() < fed.fraction]
        k = max(1, int(round(fed.fraction * len(nodes))))
        return sorted(self.rng.choice(nodes, size=k, replace=False).tolist())

    def _messages(self, nodes, arrays, config, message_type):
        self._sent = [Message(content=RecordDict({"arrays": arrays, "config": config}), message_type=message_type,
                              dst_node_id=node) for node in nodes]
        return self._sent

    def _reply_node(self, reply) -> int:
        """The node a reply is about: an error the SuperLink writes for a vanished node comes from the SuperLink
        itself, so it is traced back through the message it answers (the grid has given our messages their ids)."""
        for message in self._sent:
            if message.metadata.message_id and message.metadata.message_id == reply.metadata.reply_to_message_id:
                return message.metadata.dst_node_id
        return reply.metadata.src_node_id

    # -- Flower's Strategy interface ------------------------------------------------------------------------
    def configure_train(self, server_round, arrays, config, grid) -> Iterable:
        self._global = arrays.to_torch_state_dict()
        self._asked = self._sample(self._nodes(grid))
        config["server-round"] = server_round
        if self.config.federated.strategy == "fedprox":
            config["proximal-mu"] = float(self.config.federated.proximal_mu)
        self.rounds.append({"round": server_round, "asked": len(self._asked), "started": time.time()})
        return self._messages(self._asked, arrays, config, MessageType.TRAIN)

    def _split(self, replies) -> tuple[list[tuple[Message, int, dict]], list[dict], set[int]]:
        """(valid replies as (message, client id, its metrics but the client id), failures, nodes that answered)."""
        valid, failed = [], []
        answered = set()
        for msg in replies:
            node = self._reply_node(msg)
            answered.add(node)
            if msg.has_error():
                failed.append({"node": node, "client": self.node_clients.get(node), "reason": msg.error.reason})
                continue
            metrics = dict(next(iter(msg.content.metric_records.values())))
            client = self.node_clients[node] = int(metrics.pop(CLIENT_ID))
            valid.append((msg, client, {k: float(v) for k, v in metrics.items()}))
        return valid, failed, answered

    def _unanswered(self, answered: set[int]) -> list[dict]:
        """The nodes asked this phase that sent nothing back before the round's timeout."""
        return [{"node": n, "client": self.node_clients.get(n),
                 "reason": f"no reply within {self.config.federated.round_timeout:g} s"}
                for n in self._asked if n not in answered]

    def aggregate_train(self, server_round, replies):
        valid, failed, answered = self._split(replies)
        failed += self._unanswered(answered)
        record = self.rounds[-1]
        record["clients"] = sorted(client for _, client, _ in valid)
        record["failed"] = failed
        record["client_train"] = {str(client): metrics for _, client, metrics in valid}
        dp = self.config.federated.client_dp
        if dp is not None and dp.mode == "server":
            from trustfm.federated.privacy import private_mean

            # a round with no client still releases (noise only): the accountant counts every round
            updates = [{k: v - self._global[k] for k, v in m.content["arrays"].to_torch_state_dict().items()}
                       for m, _, _ in valid]
            if self.canary_clients is not None:
                updates += self.canary_clients.updates(self._global)
            mean = private_mean(updates, template=self._global,
                                expected_clients=self.config.federated.fraction * self.config.federated.clients,
                                noise_multiplier=dp.noise_multiplier, clipping_norm=dp.clipping_norm)
            arrays = ArrayRecord(torch_state_dict={k: self._global[k] + mean[k] for k in self._global})
            metrics = MetricRecord({"clients": len(valid)})
        elif valid:
            arrays, metrics = self.inner.aggregate_train(server_round, [m for m, _, _ in valid])
        else:
            arrays, metrics = None, None
        record["aggregated"] = arrays is not None
        for failure in failed:
            log.warning("round %d: client %s failed: %s", server_round,
                        failure["client"] if failure["client"] is not None else f"on node {failure['node']}",
                        failure["reason"])
        return arrays, metrics

    def configure_evaluate(self, server_round, arrays, config, grid) -> Iterable:
        config["server-round"] = server_round
        fed = self.config.federated
        if fed.client_evaluation == "final" and server_round < fed.rounds:
            self._asked, self._sent = [], []
            return []
        # a node that did not answer this round's training is not asked again until the next round: waiting a
        # second timeout for a machine that is gone would double the cost of every failure
        lost = {f["node"] for f in self.rounds[-1].get("failed", [])} if self.rounds else set()
        self._asked = [n for n in sorted(grid.get_node_ids()) if n not in lost]
        return self._messages(self._asked, arrays, config, MessageType.EVALUATE)

    def aggregate_evaluate(self, server_round, replies):
        valid, failed, answered = self._split(replies)
        per_client = {str(client): metrics for _, client, metrics in valid}
        record = self.rounds[-1]
        record["client_evaluation"] = per_client
        record["evaluation_failed"] = failed + self._unanswered(answered)
        record["seconds"] = time.time() - record.pop("started")
        if not per_client:
            return None
        accuracies = [m["accuracy"] for m in per_client.values()]
        return MetricRecord({"worst-client-accuracy": min(accuracies), "mean-client-accuracy": float(
            np.mean(accuracies))})

    def summary(self) -> None:
        log.info("trustfm federated strategy: %s", self.config.federated.strategy)
