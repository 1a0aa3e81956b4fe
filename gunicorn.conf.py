"""gunicorn reads this file from the working directory: the settings live in the package."""

from dungeon.gunicorn_conf import *  # noqa: F401,F403
