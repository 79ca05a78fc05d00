"""Tasks: generated problem families with a difficulty knob (see ``base.Task``)."""

from sandbag.tasks import multiplication, signed_sum  # noqa: F401  (registers the built-in tasks)
from sandbag.tasks.base import TASKS, Items, Task, import_module, make_task, register_task

__all__ = ["TASKS", "Items", "Task", "import_module", "make_task", "register_task"]
