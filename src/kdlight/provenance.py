"""What code produced a cache: a digest of the source behind a task's parsing and rendering or an
attribution method, so that an edit never silently reuses rows the old code made.

`code_digest(cls)` hashes the source of the class and of its bases in the same packages (kdlight's,
or the plugin's own), and of every function or class their code names at module level, followed
through those packages. Comments count too: a cache is rebuilt a little too often rather than
reused wrongly.
"""

from __future__ import annotations

import hashlib
import inspect
import types
from functools import lru_cache


def _package(module: str | None) -> str:
    return (module or "").split(".")[0]


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _functions_of(cls: type) -> list:
    found = []
    for value in vars(cls).values():
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        elif isinstance(value, property):
            value = value.fget
        if isinstance(value, types.FunctionType):
            found.append(value)
    return found


@lru_cache(maxsize=256)
def code_digest(cls: type) -> str:
    """16 hex characters identifying the source code behind `cls` (see the module's docstring)."""
    if not isinstance(cls, type):
        raise TypeError(f"code_digest takes a class (the code), not {type(cls).__name__} {cls!r:.60}")
    scope = {"kdlight", _package(cls.__module__)}
    sources: dict[str, str] = {}
    pending: list = [cls]
    while pending:
        obj = pending.pop()
        name = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', repr(obj))}"
        if name in sources or _package(getattr(obj, "__module__", None)) not in scope:
            continue
        try:
            sources[name] = inspect.getsource(obj)
        except (OSError, TypeError):  # defined where no source is kept: its name stands for it
            sources[name] = name
        functions = []
        if isinstance(obj, type):
            pending += [base for base in obj.__mro__[1:] if base is not object]
            functions = _functions_of(obj)
        elif isinstance(obj, types.FunctionType):
            functions = [obj]
        for function in functions:
            for used in _code_names(function.__code__):
                target = function.__globals__.get(used)
                if isinstance(target, (type, types.FunctionType)):
                    pending.append(target)
    digest = hashlib.sha256()
    for name in sorted(sources):
        digest.update(name.encode() + b"\0" + sources[name].encode() + b"\0")
    return digest.hexdigest()[:16]
