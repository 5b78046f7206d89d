"""Name -> class registries: one for each kind of pluggable piece (selectors, taggers, scorers,
benchmarks).

A registry is a ``dict`` filled by its class decorator (:meth:`Registry.register`), which also
stores the name on the class; :meth:`Registry.lookup` raises a ``ValueError`` that lists the
names available. A new piece reaches every place that reads the registry (the Python one-liners,
the command line) by being registered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T", bound=type)


class Registry(dict[str, type]):
    """Registered classes of one ``kind`` (e.g. ``"scorer"``), by name.

    ``attribute``: the class attribute the decorator sets to the registered name.
    ``loader``: called once before the first lookup, to import the modules that register the
    built-in classes (e.g. ``lambda: importlib.import_module("hf_mig.annotate.scorers")``).
    """

    def __init__(
        self, kind: str, attribute: str = "name", loader: Callable[[], object] | None = None
    ) -> None:
        super().__init__()
        self.kind = kind
        self.attribute = attribute
        self._loader = loader

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator adding the class under ``name``; registering another class under a
        taken name is a ``ValueError``."""

        def deco(cls: T) -> T:
            if name in self and self[name] is not cls:
                raise ValueError(f"{self.kind} {name!r} is already registered to {self[name]}")
            self[name] = cls
            setattr(cls, self.attribute, name)
            return cls

        return deco

    def load(self) -> Registry:
        """Import the built-in classes (once); returns the registry."""
        if self._loader is not None:
            loader, self._loader = self._loader, None
            loader()
        return self

    def lookup(self, name: str) -> type:
        """The class registered as ``name``; an unknown name is a ``ValueError`` listing the
        available ones."""
        self.load()
        try:
            return self[name]
        except KeyError:
            available = ", ".join(sorted(self))
            raise ValueError(f"unknown {self.kind} {name!r}; available: {available}") from None
