"""The web client: one page and its assets, served from ``dungeon/static``.

The page is plain HTML, CSS and ES modules with no build step; it talks to
the service only through the public JSON API, like any other client.  Its
Content-Security-Policy allows scripts, styles and connections to this origin
only and no inline code, so an injected ``<script>`` or ``style=`` never runs.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

# The app's own /static route also exists (Flask adds it for the package's
# static folder); the client's assets live under /assets with their headers.
bp = Blueprint("client", __name__, static_folder=str(STATIC_DIR), static_url_path="/assets")

CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "font-src 'self'",
    "manifest-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
    "require-trusted-types-for 'script'",
    "trusted-types 'none'",
))
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


@bp.get("/")
def index():
    """The game's page; the script takes it from there."""
    return bp.send_static_file("index.html")


@bp.after_request
def add_security_headers(response):
    """The page and every asset get the same strict policy."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response
