"""WSGI entry point: ``gunicorn wsgi:app``."""

from dungeon import create_app

app = create_app()
