from transferlm.config.load import build_config, config_to_dict, parse_override, read_yaml
from transferlm.config.schema import DataConfig, ModelConfig, RunConfig, TrainConfig
from transferlm.config.selected import StrategySettings, TaskSettings, strategy_settings, task_settings

__all__ = [
    "RunConfig",
    "ModelConfig",
    "TaskSettings",
    "DataConfig",
    "StrategySettings",
    "TrainConfig",
    "build_config",
    "config_to_dict",
    "parse_override",
    "read_yaml",
    "strategy_settings",
    "task_settings",
]
