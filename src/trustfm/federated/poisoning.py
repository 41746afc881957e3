"""What a poisoned client does under each aggregation rule: the same federation, clean and attacked, per rule.

For every rule asked for, two simulations of the run's config (same clients, rows, rounds and seed): one with no
poisoned client and one with ``federated.poison`` (default: one client sending its update scaled x10). The
final global models' validation accuracy, with and without the attack, shows which rule let it through.
Sub-runs go to ``RUN_DIR/poisoning/<rule>-<clean|poisoned>/`` (their weights are removed once scored); the table
goes to ``RUN_DIR/results/federated-poisoning.json``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import ClassVar, Literal, get_args

from pydantic import BaseModel

from trustfm.config import RunConfig
from trustfm.config.schema import FederatedConfig
from trustfm.errors import ConfigError
from trustfm.results import Result, per_item_metrics

RULES = get_args(FederatedConfig.model_fields["strategy"].annotation)  # the aggregation rules a config may name
DEFAULT_ATTACK = {"clients": 1, "attack": "scaled_update", "scale": 10.0}


class RuleUnderAttack(BaseModel):
    rule: str
    clean_accuracy: float
    poisoned_accuracy: float
    accuracy_drop: float  # clean minus poisoned (positive: the attack cost accuracy)
    clean_worst_client_accuracy: float | None = None
    poisoned_worst_client_accuracy: float | None = None


class FederatedPoisoningResult(Result):
    kind: Literal["federated-poisoning"] = "federated-poisoning"
    title: ClassVar[str] = "Poisoned clients under each aggregation rule"
    attack: dict  # clients, attack, scale
    clients: int
    rounds: int
    split: str = "validation"
    rules: list[RuleUnderAttack]

    def metrics(self) -> dict[str, float]:
        return per_item_metrics(self.rules, "rule", ("clean_accuracy", "poisoned_accuracy", "accuracy_drop"))


def poisoning_check(config: RunConfig, run_dir: Path, *, rules: list[str], show_progress: bool = False
                    ) -> FederatedPoisoningResult:
    """Simulate the federation clean and poisoned under each rule in ``rules``; returns (and writes) the table."""
    from trustfm.federated.run import federate_run
    from trustfm.fileio import write_json_atomic
    from trustfm.results import load_result
    from trustfm.runs import RunPaths

    unknown = [r for r in rules if r not in RULES]
    if unknown or not rules:
        raise ConfigError(f"--poisoning-check: rules must be among {', '.join(RULES)}, not {unknown or 'none'}")
    fed = config.federated
    attack = fed.poison.model_dump(mode="json") if fed.poison is not None else DEFAULT_ATTACK
    rows = []
    for rule in rules:
        scores = {}
        for arm in ("clean", "poisoned"):
            sub = RunPaths(Path(run_dir) / "poisoning" / f"{rule}-{arm}")
            if sub.root.exists():
                shutil.rmtree(sub.root)
            arm_config = config.model_dump(mode="json")
            arm_config["output_dir"] = str(sub.root)
            # DP is left out: the check measures the aggregation rule, and would spend privacy budget
            arm_config["federated"].update(strategy=rule, poison=attack if arm == "poisoned" else None, client_dp=None)
            arm_config["privacy"]["dp"] = None
            federate_run(RunConfig.model_validate(arm_config), show_progress=show_progress)
            scores[arm] = load_result(sub.result("federated"))
            shutil.rmtree(sub.model, ignore_errors=True)
        clean, poisoned = scores["clean"], scores["poisoned"]
        rows.append(RuleUnderAttack(
            rule=rule, clean_accuracy=clean.validation_accuracy, poisoned_accuracy=poisoned.validation_accuracy,
            accuracy_drop=clean.validation_accuracy - poisoned.validation_accuracy,
            clean_worst_client_accuracy=clean.worst_client_accuracy,
            poisoned_worst_client_accuracy=poisoned.worst_client_accuracy))
    result = FederatedPoisoningResult(attack=attack, clients=fed.clients, rounds=fed.rounds, rules=rows)
    write_json_atomic(RunPaths(Path(run_dir)).result("federated-poisoning"), result.model_dump(mode="json"))
    return result
