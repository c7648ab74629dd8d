"""Named choices declared once: models, normalisations, augmentations, optimizers, schedules, CAM methods.

A `Registry` maps each name a user may type to what it stands for, in the order declared, with a line
of help and any facts the rest of the package needs about it. The settings' choice lists, their help
texts and the refusal of an unknown name are all read from the registry, so a new entry is one
declaration, beside its code.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator


class Registry:
    def __init__(self, kind: str):
        self.kind = kind  # what an entry is, for messages: "model", "augmentation"
        self._entries: dict[str, Any] = {}
        self.help: dict[str, str] = {}
        self.info: dict[str, dict] = {}

    def register(self, name: str, thing: Any = None, *, help: str = "", **info) -> Any:
        """Declare `thing` under `name`; without `thing`, a decorator that declares what it decorates."""
        if thing is None:
            return lambda decorated: self.register(name, decorated, help=help, **info)
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is declared twice")
        self._entries[name] = thing
        self.help[name] = help
        self.info[name] = info
        return thing

    def __getitem__(self, name: str) -> Any:
        if name not in self._entries:
            raise ValueError(f"unknown {self.kind} {name!r}; known: {', '.join(self._entries)}")
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self, where: Callable[[dict], bool] | None = None) -> tuple[str, ...]:
        """The declared names in order; with `where`, those whose info it accepts."""
        return tuple(name for name in self._entries if where is None or where(self.info[name]))

    def described(self) -> str:
        """'name (help), name (help), ...' for a setting's help text."""
        return ", ".join(f"{name} ({self.help[name]})" if self.help[name] else name for name in self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind}: {', '.join(self._entries)})"
