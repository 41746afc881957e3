"""Run configuration: pydantic schema and YAML loading with CLI overrides."""

from trustfm.config.load import dump_config, load_config, parse_override
from trustfm.config.schema import (
    DataConfig,
    EvaluateConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
)

__all__ = [
    "DataConfig",
    "EvaluateConfig",
    "ModelConfig",
    "RunConfig",
    "TrainConfig",
    "dump_config",
    "load_config",
    "parse_override",
]
