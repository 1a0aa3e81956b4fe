"""The ``dungeon`` command: serve, check-config, providers, collect-images, rotate-keys."""

from __future__ import annotations

import json
import os
import sys

import click

from . import settings
from .errors import ConfigError

EXIT_INVALID_CONFIG = 1  # as documented in the README and in each command's help


@click.group()
def main() -> None:
    """Run and inspect the dungeon service."""


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("gunicorn_args", nargs=-1, type=click.UNPROCESSED)
def serve(gunicorn_args: tuple[str, ...]) -> None:
    """Serve the API with gunicorn and the project's settings (extra options go to gunicorn)."""
    _app_or_exit()  # fail here, with a clear message, rather than in every worker
    command = [sys.executable, "-m", "gunicorn", "-c", "python:dungeon.gunicorn_conf",
               *gunicorn_args]
    os.execvp(command[0], command)


@main.command("check-config")
def check_config() -> None:
    """Print the effective configuration, secrets masked; exit 1 if it is invalid."""
    app = _app_or_exit()
    shown = settings.masked(app.config)
    click.echo(json.dumps(shown, indent=2, default=str))


@main.command()
@click.option("--online/--offline", default=True,
              help="Ask the OpenAI API which models exist (needs a key).")
def providers(online: bool) -> None:
    """List the configured image providers with model, breaker state and availability."""
    app = _app_or_exit()
    state = app.extensions["dungeon"]
    listed = _listed_models(state.config) if online else None
    for entry in state.images.status():
        click.echo(_provider_line(entry, listed))


@main.command("collect-images")
def collect_images() -> None:
    """Delete stored images that no turn uses and that are older than IMAGE_RETENTION_HOURS.

    Deleting a game collects its own images at once; this sweep catches the
    rest (images of expired games, of POST /api/images, of interrupted
    deletes).  Each image is checked and deleted on its own, so the sweep
    can be stopped and run again at any time; run it daily, say, from cron.
    """
    app = _app_or_exit()
    state = app.extensions["dungeon"]
    if not state.indexes.ensure():
        click.echo(f"store not ready: {state.indexes.error}", err=True)
        sys.exit(1)
    removed = state.jobs.collect()
    click.echo(f"collected {removed} stored image(s) that nothing used")


@main.command("rotate-keys")
@click.option("--batch", default=500, show_default=True, help="Documents read at a time.")
def rotate_keys(batch: int) -> None:
    """Re-encrypt saved games with the first of ENCRYPTION_KEYS; safe to stop and run again.

    Put the new key first in ENCRYPTION_KEYS (the old ones after it), run
    this, and once it reports nothing left the old keys can be removed.
    """
    from .sessions.rotation import rotate

    app = _app_or_exit()
    state = app.extensions["dungeon"]
    if not state.sessions.cipher.enabled:
        click.echo("ENCRYPTION_KEYS is unset: there is no key to encrypt with", err=True)
        sys.exit(EXIT_INVALID_CONFIG)
    report = rotate(state.db, state.sessions.cipher, batch=batch)
    for line in report.lines():
        click.echo(line)


def _provider_line(entry: dict, listed: dict | None) -> str:
    line = f"{entry['name']:24} model={entry['model'] or '-':22} breaker={entry['state']}"
    if entry.get("shutdown_date"):
        line += f" shutdown={entry['shutdown_date']}"
    if listed is not None and entry["model"]:
        found = entry["model"] in listed
        line += f" listed={'yes' if found else 'no'}"
        if found and listed[entry["model"]]:
            line += f" api_shutdown={listed[entry['model']]}"
    return line


def _listed_models(config: dict) -> dict | None:
    """Return ``{model id: shutdown date or None}`` from ``GET /models``, or None without a key."""
    import requests

    if not config["OPENAI_API_KEY"]:
        return None
    try:
        response = requests.get(f"{config['OPENAI_BASE_URL'].rstrip('/')}/models", timeout=10,
                                headers={"Authorization": f"Bearer {config['OPENAI_API_KEY']}"})
        response.raise_for_status()
        return {m["id"]: m.get("shutdown_date") for m in response.json().get("data", [])}
    except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
        click.echo(f"could not list models: {type(exc).__name__}", err=True)
        return None


def _app_or_exit():
    from .app import create_app

    try:
        return create_app()
    except ConfigError as exc:
        click.echo(f"invalid configuration: {exc}", err=True)
        sys.exit(EXIT_INVALID_CONFIG)
