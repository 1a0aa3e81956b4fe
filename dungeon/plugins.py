"""The plugin manager: built-ins by import path, entry points, configured modules."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pluggy

from . import hookspecs
from .errors import ConfigError, DuplicateName, UnknownPlugin

log = logging.getLogger(__name__)

# Built-in plugins, registered by import path like any other module plugin.
DEFAULT_PLUGINS = (
    "providers.openai_images",
    "providers.placeholder",
    "dungeon.narrators.local",
    "dungeon.narrators.openai",
)


def make_plugin_manager(config: Mapping[str, Any],
                        extra_plugins: Iterable[object] = ()) -> pluggy.PluginManager:
    """Build a fresh plugin manager for one application.

    Registration order does not matter for behaviour: which provider is tried
    first comes from ``IMAGE_PROVIDERS``.  ``check_pending`` at the end makes
    a misspelled hook implementation a start-up error instead of a silent no-op.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name in config["DISABLED_PLUGINS"]:
        pm.set_blocked(name)
    if config["LOAD_ENTRYPOINTS"]:
        pm.load_setuptools_entrypoints(hookspecs.PROJECT)
    for path in (*DEFAULT_PLUGINS, *config["PLUGINS"]):
        _register_module(pm, path)
    for plugin in extra_plugins:
        pm.register(plugin, name=getattr(plugin, "__name__", None))
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise ConfigError(f"plugin {exc.plugin!r}: {exc}") from None
    return pm


def _register_module(pm: pluggy.PluginManager, path: str) -> None:
    if pm.is_blocked(path) or pm.has_plugin(path):
        return
    try:
        module = importlib.import_module(path)
    except ImportError as exc:
        raise UnknownPlugin(f"PLUGINS: cannot import plugin module {path!r}: {exc}") from None
    pm.register(module, name=path)


def collect(pm: pluggy.PluginManager, hook_name: str, config: Mapping[str, Any],
            kind: str) -> dict[str, Any]:
    """Call a registration hook and return ``{name: object}`` of what was registered.

    Each implementation is called on its own, so that a name registered twice
    is reported with both plugins' names.
    """
    found: dict[str, Any] = {}
    owners: dict[str, str] = {}
    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        register = _registrar(found, owners, impl.plugin_name, kind)
        arguments = {"register": register, "config": config}
        impl.function(*[arguments[name] for name in impl.argnames])
    return found


def _registrar(found: dict[str, Any], owners: dict[str, str], plugin_name: str,
               kind: str) -> Callable[[Any], None]:
    def register(obj: Any) -> None:
        name = getattr(obj, "name", None)
        if not isinstance(name, str) or not name:
            raise ConfigError(f"plugin {plugin_name!r} registered a {kind} without a name")
        if name in found:
            raise DuplicateName(f"{kind} {name!r} is registered by both plugin "
                                f"{owners[name]!r} and plugin {plugin_name!r}")
        found[name] = obj
        owners[name] = plugin_name

    return register
