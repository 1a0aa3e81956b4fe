"""Hook specifications: what a dungeon plugin can provide.

Hooks here are *registration* hooks: each plugin is handed a ``register``
callback and the service's configuration, and registers the objects it
offers.  Which of them are used, and in what order, is decided afterwards by
configuration, never by the order in which pluggy calls plugins.
"""

from __future__ import annotations

from typing import Any

import pluggy

PROJECT = "dungeon"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_image_providers(register: Any, config: Any) -> None:
    """Register image providers by calling ``register(provider)`` once per provider.

    :param register: callback taking an object with a ``name`` attribute and a
        ``generate(request, timeout)`` method (see ``dungeon.images.types.ImageProvider``).
    :param config: the application's validated configuration (read-only mapping).
    """


@hookspec
def register_narrators(register: Any, config: Any) -> None:
    """Register story narrators by calling ``register(narrator)`` once per narrator.

    :param register: callback taking an object with a ``name`` attribute and a
        ``narrate(context)`` method.
    :param config: the application's validated configuration (read-only mapping).
    """
