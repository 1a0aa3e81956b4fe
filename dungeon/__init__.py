"""dungeon: the backend of an AI text-adventure game.

Plugins write ``@dungeon.hookimpl``.  The application is made by
``dungeon.create_app()``.
"""

from .hookspecs import hookimpl

__all__ = ["create_app", "hookimpl"]


def create_app(*args, **kwargs):
    """Create the application; see ``dungeon.app.create_app``."""
    # Imported here, not at the top: gunicorn's configuration imports this
    # package before the workers start, and must not pull in Flask, the
    # plugins or prometheus_client while doing so.
    from .app import create_app as factory

    return factory(*args, **kwargs)
