from transferlm.strategies import basic  # noqa: F401  (registers full, frozen)
from transferlm.strategies.base import STRATEGIES, ParameterCount, Strategy, build_strategy, count_parameters

__all__ = ["STRATEGIES", "ParameterCount", "Strategy", "build_strategy", "count_parameters"]
