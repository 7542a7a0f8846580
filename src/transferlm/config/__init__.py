from transferlm.config.load import build_config, config_to_dict, parse_override, read_yaml
from transferlm.config.schema import DataConfig, ModelConfig, RunConfig, StrategyConfig, TaskConfig, TrainConfig

__all__ = [
    "RunConfig",
    "ModelConfig",
    "TaskConfig",
    "DataConfig",
    "StrategyConfig",
    "TrainConfig",
    "build_config",
    "config_to_dict",
    "parse_override",
    "read_yaml",
]
