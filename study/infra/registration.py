"""A registry of named things (families, tasks) that remembers which module registered each name and refuses a
second registration of the same name from another module, naming both (timm's registry warns; a study silently
running someone else's model under a familiar name is worse than an error)."""

from __future__ import annotations

from typing import Generic, Iterator, TypeVar

from study.infra.errors import StudyError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, plural: str):
        self.kind, self.plural = kind, plural
        self.entries: dict[str, T] = {}
        self.modules: dict[str, str] = {}

    def add(self, name: str, entry: T, module: str) -> None:
        if name in self.entries and self.modules[name] != module:
            raise StudyError(f"{self.kind} {name!r} is registered twice: by {self.modules[name]} and by {module}")
        self.entries[name], self.modules[name] = entry, module

    def get(self, name: str) -> T:
        if name not in self.entries:
            raise StudyError(f"unknown {self.kind} {name!r}; valid {self.plural}: {', '.join(sorted(self.entries))}")
        return self.entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)
