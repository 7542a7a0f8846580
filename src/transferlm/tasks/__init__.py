from transferlm.tasks import classification  # noqa: F401  (registers the task)
from transferlm.tasks.base import TASKS, Features, LossTerms, Task, build_task

__all__ = ["TASKS", "Features", "LossTerms", "Task", "build_task"]
