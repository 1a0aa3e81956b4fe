"""The readable API reference at ``/api/docs``: Redoc over ``/api/openapi.json``.

Redoc's script is served from the flask-openapi3-redoc package under
``/api/redoc``; the page has no inline script, so a strict policy holds.
"""

from __future__ import annotations

from flask import Blueprint, Response

bp = Blueprint("reference", __name__, url_prefix="/api")

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dungeon API reference</title>
</head>
<body>
<redoc spec-url="openapi.json"></redoc>
<script src="redoc/js/redoc.standalone.js"></script>
</body>
</html>
"""
# Redoc draws its page with inline styles and web workers from blobs.
POLICY = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
          "img-src 'self' data:; connect-src 'self'; worker-src blob:; font-src 'self' data:; "
          "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


@bp.get("/docs")
def docs():
    """The API reference, readable in a browser."""
    return Response(PAGE, mimetype="text/html",
                    headers={"Content-Security-Policy": POLICY,
                             "X-Content-Type-Options": "nosniff"})
