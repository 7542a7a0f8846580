from transferlm.strategies import basic, contrastive, lora  # noqa: F401  (registers the strategies)
from transferlm.strategies.base import STRATEGIES, ParameterCount, Strategy, build_strategy, count_parameters

__all__ = ["STRATEGIES", "ParameterCount", "Strategy", "build_strategy", "count_parameters"]
