"""Named factories: the engines and the enhancers are each chosen by name from one of these.

A factory lives in a module of its own that registers it when imported; modules with heavy
dependencies (ONNX Runtime) are imported only when their name is asked for.
"""

from __future__ import annotations

import importlib
from typing import Callable, Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, what: str, setting: str, package: str, lazy_modules: dict[str, str]):
        """`what` names the kind in messages ("engine"), `setting` is its config key
        ("inference.engine"), `lazy_modules` maps a name to the module (relative to
        `package`) that registers it."""
        self.what, self.setting, self.package = what, setting, package
        self.lazy_modules = dict(lazy_modules)
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str, factory: Callable[..., T]) -> None:
        self._factories[name] = factory

    def available(self) -> list[str]:
        return sorted(set(self._factories) | set(self.lazy_modules))

    def create(self, name: str, settings=None) -> T:
        """Build the one called `name` (the inference settings are passed to its factory)."""
        if name not in self._factories and name in self.lazy_modules:
            try:
                importlib.import_module(self.lazy_modules[name], self.package)
            except ModuleNotFoundError as exc:
                raise ConfigError(f"{self.setting}: the {self.what} '{name}' is not installed in this build "
                                  f"({exc})") from exc
        if name not in self._factories:
            raise ConfigError(f"{self.setting}: unknown {self.what} '{name}'; choose one of "
                              f"{', '.join(self.available())}")
        return self._factories[name](settings)
