"""The placeholder provider: a genre- and style-matched PNG that never fails.

The images are rendered by ``scripts/make_placeholders.py`` and shipped as
package data; they are read once, when the provider is created, and served
from memory, so the last resort touches neither the network nor the disk.
"""

from __future__ import annotations

from importlib import resources

import dungeon
from dungeon.catalog import GENRES, STYLES
from dungeon.images.types import GeneratedImage, ImageRequest


@dungeon.hookimpl
def register_image_providers(register):
    """Register the placeholder provider."""
    register(PlaceholderProvider())


class PlaceholderProvider:
    """Returns a pre-rendered scene image for the request's genre and style."""

    name = "placeholder"
    model = None
    is_placeholder = True

    def __init__(self):
        folder = resources.files(__package__) / "placeholders"
        self.images = {(g, s): (folder / f"{g}-{s}.png").read_bytes()
                       for g in GENRES for s in STYLES}
        self.generic = (folder / "generic.png").read_bytes()

    def generate(self, request: ImageRequest, timeout: float = 0) -> GeneratedImage:
        """Return the placeholder for ``request``'s genre and style (generic when unknown)."""
        data = self.images.get((request.genre, request.style), self.generic)
        return GeneratedImage(data=data, content_type="image/png", placeholder=True)
