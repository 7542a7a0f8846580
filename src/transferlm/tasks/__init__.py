from transferlm.tasks import causal_lm, classification, masked_lm, ner, qa  # noqa: F401  (registers the tasks)
from transferlm.tasks.base import TASKS, Features, LossTerms, Task, build_task

__all__ = ["TASKS", "Features", "LossTerms", "Task", "build_task"]
