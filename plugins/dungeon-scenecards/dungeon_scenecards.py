"""Offline scene cards: the scene's prompt drawn on a genre-coloured card.

An example of a provider plugin that needs no network: it registers through
the ``dungeon`` entry point, answers with PNG bytes, and honours the game's
aspect.  Drawing is deterministic, so the same scene gives the same bytes (and
the same stored image).
"""

from __future__ import annotations

import textwrap
from io import BytesIO

from PIL import Image, ImageDraw, ImageFont

import dungeon
from dungeon.catalog import COLOURS, GENRES, style_hint
from dungeon.images.types import GeneratedImage, ImageRequest

SIZES = {"square": (640, 640), "landscape": (768, 512), "portrait": (512, 768)}


@dungeon.hookimpl
def register_image_providers(register):
    """Register the scene-card provider."""
    register(SceneCardProvider())


class SceneCardProvider:
    """Draws the prompt of each scene on a card; never fails, never waits."""

    name = "scenecard"
    model = "scenecard-1"
    max_prompt_chars = 600

    def generate(self, request: ImageRequest, timeout: float) -> GeneratedImage:
        """Return a PNG card showing the scene's prompt, genre and style."""
        size = SIZES.get(request.aspect, SIZES["landscape"])
        dark, light = COLOURS.get(request.genre, COLOURS["generic"])
        image = Image.new("RGB", size, dark)
        draw = ImageDraw.Draw(image)
        draw.rectangle([12, 12, size[0] - 13, size[1] - 13], outline=light, width=3)
        title = GENRES.get(request.genre, {}).get("title", "Adventure")
        draw.text((32, 28), title, fill=light, font=ImageFont.load_default(size=34))
        body = ImageFont.load_default(size=22)
        lines = textwrap.wrap(request.prompt, width=size[0] // 13)[: (size[1] - 160) // 30]
        for index, line in enumerate(lines):
            draw.text((32, 90 + 30 * index), line, fill=(235, 235, 235), font=body)
        draw.text((32, size[1] - 50), style_hint(request.style), fill=light,
                  font=ImageFont.load_default(size=18))
        buffer = BytesIO()
        image.save(buffer, format="PNG", optimize=True)
        return GeneratedImage(data=buffer.getvalue(), content_type="image/png")
