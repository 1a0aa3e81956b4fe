"""The catalog: the genres and art styles a game can have."""

from __future__ import annotations

from flask_openapi3 import APIBlueprint, Tag

from .. import catalog
from .schemas import Catalog

bp = APIBlueprint("catalog", __name__, url_prefix="/api",
                  abp_tags=[Tag(name="catalog", description="What a game can be.")])


@bp.get("/catalog", responses={200: Catalog})
def get_catalog():
    """List the genres and art styles a game can have."""
    return catalog.as_json()
