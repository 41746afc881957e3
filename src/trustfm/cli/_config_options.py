"""CLI flags that map onto run-config keys: each flag names the key it sets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# flag name (python identifier) -> dotted config key
FLAG_KEYS = {
    "data": "data.train",
    "validation_data": "data.validation",
    "test_data": "data.test",
    "data_format": "data.format",
    "modality": "data.modality",
    "text_column": "data.text_column",
    "label_column": "data.label_column",
    "id_column": "data.id_column",
    "group_column": "data.group_columns",
    "max_length": "data.max_length",
    "model": "model.name_or_path",
    "allow_pickle": "model.allow_pickle",
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "learning_rate": "train.learning_rate",
    "seed": "seed",
    "task": "task",
    "dp_epsilon": "privacy.dp.epsilon",
    "redact": "privacy.redact",
    "adversarial_training": "robustness.adversarial_training.method",
    "fairness_mitigation": "fairness.mitigation",
    "sensitive": "fairness.sensitive",
    "output_dir": "output_dir",
    "clients": "federated.clients",
    "rounds": "federated.rounds",
    "strategy": "federated.strategy",
    "partition": "federated.partition.method",
    "alpha": "federated.partition.alpha",
    "local_epochs": "federated.local_epochs",
    "trials": "tune.trials",
    "sampler": "tune.sampler",
    "pruner": "tune.pruner",
    "select": "tune.select",
}


def overrides_from_flags(flags: dict[str, Any], set_items: list[str] | None) -> dict[str, Any]:
    """Config overrides from the flags that were given, then ``--set key=value`` items."""
    from trustfm.config import parse_override

    overrides: dict[str, Any] = {}
    for name, key in FLAG_KEYS.items():
        value = flags.get(name)
        if value is None or value == [] or value is False:
            continue
        overrides[key] = str(value) if isinstance(value, Path) else value
    for item in set_items or []:
        key, value = parse_override(item)
        overrides[key] = value
    return overrides
