from transferlm.tasks import causal_lm, classification, masked_lm, ner, qa, regression  # noqa: F401  (registers)
from transferlm.tasks.base import TASKS, Features, LossTerms, Task, build_task

__all__ = ["TASKS", "Features", "LossTerms", "Task", "build_task"]
