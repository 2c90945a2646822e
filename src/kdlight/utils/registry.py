"""One kind of registry for every seam kdlight varies along: attribution methods, model families,
tasks (datasets) and student kinds. A registry maps names to what was registered under them; a
plugin registers into the same registries as the built-ins (kdlight.utils.plugins), and tests read the
registries instead of keeping lists of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Registry(dict):
    """name -> registered object. `register` refuses a second, different object under a name; `get`
    names the config key and the registered names when a name is unknown."""

    def __init__(self, kind: str, config_key: str) -> None:
        super().__init__()
        self.kind, self.config_key = kind, config_key

    def register(self, name: str, value: Any) -> Any:
        previous = self.get(name)
        if previous is not None and not _same(previous, value):
            raise ValueError(f"{self.kind} {name!r} is registered twice: by {_origin(previous)} and by {_origin(value)}")
        self[name] = value
        return value

    def lookup(self, name: str) -> Any:
        if name not in self:
            raise ValueError(f"{self.config_key}={name!r} is not accepted; use one of {sorted(self)}")
        return self[name]

    def decorator(self, name_of: Callable[[Any], str] = lambda obj: obj.name) -> Callable[[Any], Any]:
        """A class decorator registering the class (or, for instances, `name_of` the object)."""
        def register(obj):
            self.register(name_of(obj), obj)
            return obj
        return register


def _origin(obj) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _same(a, b) -> bool:
    """The same class (or an instance of it), also when its module was imported again (a reload)."""
    return _origin(a) == _origin(b)
