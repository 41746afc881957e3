"""``results/federated.json``: what a federated run did, round by round and client by client."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel

from trustfm.results import Result, put_metric


class ClientRecord(BaseModel):
    """One client: the rows it held, whether it was a poisoner, and the final global model on its held-out rows."""

    client: int
    train_rows: int
    holdout_rows: int
    label_counts: dict[str, int]  # its training rows per class
    poisoned: bool = False
    source: str = "partition"
    accuracy: float | None = None  # final global model on the client's holdout rows; None if it never answered
    macro_f1: float | None = None


class FederatedPrivacy(BaseModel):
    """Which guarantee holds, and at what epsilon (delta)."""

    guarantee: Literal["client-level (server)", "client-level (local)", "example-level (DP-SGD in each client)",
                       "client-level (server) and example-level", "client-level (local) and example-level"]
    client_epsilon: float | None = None  # over the rounds completed, protecting all of one client's data
    client_planned_epsilon: float | None = None  # over every planned round (what was reserved)
    client_delta: float | None = None
    noise_multiplier: float | None = None
    clipping_norm: float | None = None
    sample_rate: float | None = None  # per-round client sampling rate the accountant credits (1: none)
    example_epsilon: float | None = None  # the largest DP-SGD epsilon any client spent on its own rows
    example_delta: float | None = None
    ledger_epsilon: float | None = None  # charged to the dataset in the privacy ledger: the smaller bound
    accountant: str = "rdp"


class FederatedResult(Result):
    """A federated run: plan, rounds, per-client numbers (worst client), failures, attack and privacy."""

    kind: Literal["federated"] = "federated"
    title: ClassVar[str] = "Federated training"
    mode: Literal["simulation", "deployment"]
    strategy: str
    clients: int
    rounds_planned: int
    rounds_completed: int
    local_epochs: int
    fraction: float
    partition: dict  # method, alpha, column
    poison: dict | None = None  # clients, attack, scale
    client_records: list[ClientRecord]
    rounds: list[dict]  # per round: asked, clients, failed [{client, node, reason}], client_train,
    # client_evaluation {client: {accuracy, macro_f1, loss, examples}}, validation {accuracy, macro_f1, loss}, seconds
    validation_accuracy: float | None = None  # final global model on the run's validation split
    validation_macro_f1: float | None = None
    validation_majority_share: float | None = None  # share of validation answers in the most answered class
    worst_client_accuracy: float | None = None
    mean_client_accuracy: float | None = None
    client_accuracy_gap: float | None = None  # best minus worst client accuracy
    client_failures: int = 0  # failed client replies over all rounds (train and evaluate)
    privacy: FederatedPrivacy | None = None
    seconds: float | None = None

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for key in ("rounds_completed", "validation_accuracy", "validation_macro_f1", "worst_client_accuracy",
                    "mean_client_accuracy", "client_accuracy_gap", "client_failures"):
            put_metric(out, key, getattr(self, key))
        if self.privacy is not None:
            for key in ("client_epsilon", "example_epsilon", "ledger_epsilon"):
                put_metric(out, f"privacy.{key}", getattr(self.privacy, key))
        return out

    def flags(self) -> list[str]:
        flags = []
        if self.rounds_completed < self.rounds_planned:
            flags.append(f"only {self.rounds_completed} of {self.rounds_planned} rounds completed")
        if self.poison:
            flags.append(f"trained with {self.poison['clients']} poisoned client(s) ({self.poison['attack']}): "
                         "an attack experiment, not a model to release")
        if self.validation_majority_share is not None and self.validation_majority_share >= 0.95:
            cause = (" (the client-level DP noise may be too strong for this many clients and rounds: more clients "
                     "per round, fewer rounds or a larger epsilon)" if self.privacy is not None else "")
            flags.append(f"the global model answers one class for {self.validation_majority_share:.0%} of the "
                         f"validation rows: it has collapsed{cause}")
        return flags
