"""Simulation without Ray: Flower's ``Grid`` over ClientApps called in this process.

Flower's own simulation engine runs each ClientApp in a Ray actor. Here the server's messages go straight to
``client_app(message, context)``, one client after another, each with its own persistent ``Context`` (node
config ``partition-id``), so the same ServerApp and ClientApp code runs as in a deployment. Clients train one
after another: on a small machine the model already uses every core.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from uuid import uuid4

from flwr.app import Context, Error, Message, RecordDict
from flwr.serverapp import Grid

from trustfm.errors import TrustfmError

log = logging.getLogger("trustfm.federated")
CLIENT_ERROR = 1  # Flower's code for an exception raised by a ClientApp (ErrorCode.CLIENT_APP_RAISED_EXCEPTION)
FIRST_NODE_ID = 1001


def error_reason(exc: BaseException) -> str:
    """One line saying why a client failed: our own errors say it themselves; others are named by type."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text if isinstance(exc, TrustfmError) else f"{type(exc).__name__}: {text}"


class LocalGrid(Grid):
    """``clients`` simulated SuperNodes (node ids from 1001) calling ``client_app`` in this process."""

    def __init__(self, client_app, *, clients: int, run_config: dict, run_id: int = 1):
        self.client_app = client_app
        self.run_id = run_id
        self.contexts = {
            FIRST_NODE_ID + i: Context(run_id=run_id, node_id=FIRST_NODE_ID + i,
                                       node_config={"partition-id": i, "num-partitions": clients},
                                       state=RecordDict(), run_config=dict(run_config))
            for i in range(clients)
        }
        self._pending: dict[str, Message] = {}
        self._run = None

    def set_run(self, run) -> None:
        self._run = run

    @property
    def run(self):
        return self._run

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None) -> Message:
        return Message(content=content, dst_node_id=dst_node_id, message_type=message_type, ttl=ttl,
                       group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def get_nodes(self):
        return []

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for message in messages:
            message.metadata.__dict__["_message_id"] = uuid4().hex
            self._pending[message.metadata.message_id] = message
            ids.append(message.metadata.message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        replies = []
        for message_id in message_ids:
            message = self._pending.pop(message_id, None)
            if message is None:
                continue
            context = self.contexts[message.metadata.dst_node_id]
            try:
                reply = self.client_app(message, context)
            except Exception as exc:  # a failing client is a failed reply, as on a SuperNode: the round goes on
                log.warning("client %s failed: %s", context.node_config["partition-id"], error_reason(exc))
                reply = Message(error=Error(code=CLIENT_ERROR, reason=error_reason(exc)), reply_to=message)
            reply.metadata.__dict__["_message_id"] = uuid4().hex
            replies.append(reply)
        return replies

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        return self.pull_messages(list(self.push_messages(messages)))
