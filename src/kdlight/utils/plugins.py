"""Plugins: attribution methods, model families, tasks (datasets) and student kinds from your own
modules, with no edit to kdlight (README, "Plugins").

A plugin is a Python module that registers what it defines when imported (`register_method`,
`register_family`, `register_task`, `register_student_kind`) and may name a folder of YAML in the
config groups' layout as `CONFIG_DIR` (e.g. `conf/attribution/my_method.yaml`). kdlight imports
- every module of its own `kdlight.attribution` and `kdlight.families` packages (the built-ins
  register the same way: no list of them is kept anywhere);
- the modules installed packages declare as entry points in the group `kdlight.utils.plugins`;
- the modules named in `KDLIGHT_PLUGINS` (comma-separated; the module must be importable, e.g. on
  PYTHONPATH), whose CONFIG_DIRs, like the entry points', join the config search path before the
  command's config is composed;
- the modules of the config's `plugins: [...]` list (code only: their YAML is not searched).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

ENTRY_POINT_GROUP = "kdlight.utils.plugins"


class PluginImportError(ImportError):
    """A plugin the user named cannot be imported (the message says where plugins are declared)."""


ENV = "KDLIGHT_PLUGINS"
BUILTIN_PACKAGES = ("kdlight.attribution", "kdlight.families")


def import_package(package: str) -> list[str]:
    """Import every module of a package (what registers the built-ins); returns their names."""
    root = importlib.import_module(package)
    names = [f"{package}.{info.name}" for info in pkgutil.iter_modules(root.__path__)]
    for name in names:
        importlib.import_module(name)
    return names


def declared_plugins(extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The plugin modules to import: entry points, then KDLIGHT_PLUGINS, then `extra` (the config's list)."""
    names = [ep.value.split(":")[0] for ep in entry_points(group=ENTRY_POINT_GROUP)]
    names += [name.strip() for name in os.environ.get(ENV, "").split(",") if name.strip()]
    names += [str(name) for name in extra or ()]
    return list(dict.fromkeys(names))


def load_plugins(extra: list[str] | tuple[str, ...] = (), builtins: bool = True) -> list[ModuleType]:
    """Import every declared plugin module (once), and with `builtins` kdlight's own methods and
    families (which import torch: the command line's first checks run without them)."""
    if builtins:
        for package in BUILTIN_PACKAGES:
            import_package(package)
    return [import_plugin(name) for name in declared_plugins(extra)]


def import_plugin(name: str) -> ModuleType:
    """One plugin module the user named; found on the import path or, failing that, in the current folder
    (a console script's path does not hold it). One that cannot be imported is named with where plugins are declared."""
    try:
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name.split(".")[0] or os.getcwd() in sys.path:
                raise
            sys.path.append(os.getcwd())  # last: never in place of an installed module
            return importlib.import_module(name)
    except ImportError as err:
        raise PluginImportError(
            f"plugin module {name!r} (from the {ENTRY_POINT_GROUP} entry points, {ENV} or the config's plugins list) "
            f"cannot be imported: {err}. A plugin must be importable: an installed package, or a folder on PYTHONPATH"
        ) from err


def plugin_config_dirs() -> list[Path]:
    """The YAML folders (CONFIG_DIR) of the plugins declared before composing: entry points and KDLIGHT_PLUGINS."""
    dirs = []
    for name in declared_plugins():
        module = import_plugin(name)
        folder = getattr(module, "CONFIG_DIR", None)
        if folder is not None:
            path = Path(folder)
            if not path.is_dir():
                raise FileNotFoundError(f"plugin {name}: CONFIG_DIR={path} is not a folder")
            dirs.append(path.resolve())
    return dirs


def searchpath_overrides(overrides: list[str]) -> list[str]:
    """The Hydra override adding the plugins' YAML folders to the config search path (none when there
    are none, or when the command sets hydra.searchpath itself)."""
    dirs = plugin_config_dirs()
    if not dirs or any(o.lstrip("+").startswith("hydra.searchpath") for o in overrides):
        return []
    return ["hydra.searchpath=[" + ",".join(f"file://{d}" for d in dirs) + "]"]
