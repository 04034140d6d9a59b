"""Tasks: name -> Task class. Importing this package registers the built-in tasks; a user's module registers more
with @register_task (see study.infra.plugins)."""

from study.tasks.base import (Head, Split, Task, TaskData, TaskSpec, resolve_data_dir)  # noqa: F401
from study.tasks.registry import DEFAULT_TASK, TASKS, get_task_class, open_task, register_task  # noqa: F401
from study.tasks import arrays, cifar100, digit_pairs, images, table  # noqa: F401,E402  (registers each task)
