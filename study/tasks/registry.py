"""The task registry: a Task class registered by its `name`; a second registration of a name is refused."""

from __future__ import annotations

from study.infra.errors import StudyError
from study.infra.registration import Registry
from study.tasks.base import Task

DEFAULT_TASK = "digit_pairs"

TASKS: Registry[type[Task]] = Registry("task", "tasks")


def register_task(cls: type[Task]) -> type[Task]:
    TASKS.add(cls.name, cls, cls.__module__)
    return cls


def get_task_class(name: str) -> type[Task]:
    return TASKS.get(name)


def open_task(name: str, data_dir=None, data: str | None = None, heads: str | None = None) -> Task:
    """Load task `name`'s data (a bad name, file or dir is a StudyError naming it)."""
    cls = get_task_class(name)
    try:
        return cls(data_dir=data_dir, data=data, heads=heads)
    except StudyError:
        raise
    except (OSError, ValueError) as exc:
        raise StudyError(f"task {name!r}: {exc}") from None
