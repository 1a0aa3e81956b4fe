"""Render the placeholder scene images shipped in providers/placeholders/.

One PNG per genre and art style of the catalog, plus generic.png for anything
else.  Rendering is deterministic (no randomness, no timestamps), so running
this again with the same Pillow gives the same bytes.

    pip install -e '.[dev]' && python scripts/make_placeholders.py
"""

from __future__ import annotations

import hashlib
import sys
from io import BytesIO
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dungeon.catalog import COLOURS, GENRES, STYLES  # noqa: E402

OUT = ROOT / "providers" / "placeholders"
SIZE = (768, 512)


def _blend(a, b, t):
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b, strict=True))


def _background(draw, dark, light):
    width, height = SIZE
    for y in range(height):
        draw.line([(0, y), (width, y)], fill=_blend(dark, light, 0.35 * y / height))


def _motif(draw, style, light):
    width, height = SIZE
    if style == "pixel_art":
        for x in range(0, width, 32):
            for y in range(height - 160, height, 32):
                if (x // 32 + y // 32) % 3 == 0:
                    draw.rectangle([x, y, x + 31, y + 31], fill=_blend(light, (0, 0, 0), 0.55))
    elif style == "comic":
        for x in range(0, width, 18):
            for y in range(0, height, 18):
                draw.ellipse([x, y, x + 4, y + 4], fill=_blend(light, (0, 0, 0), 0.7))
        draw.rectangle([8, 8, width - 9, height - 9], outline=(0, 0, 0), width=6)
    elif style == "watercolor":
        for i in range(6):
            r = 60 + 25 * i
            draw.ellipse([width // 2 - r, height // 2 - r, width // 2 + r, height // 2 + r],
                         outline=_blend(light, (255, 255, 255), 0.1 * i), width=3)
    elif style == "photoreal":
        draw.rectangle([0, 0, width, 40], fill=(0, 0, 0))
        draw.rectangle([0, height - 40, width, height], fill=(0, 0, 0))
    else:  # painterly and generic: a horizon and mountains
        draw.polygon([(0, 380), (180, 250), (320, 340), (470, 210), (768, 360), (768, 512),
                      (0, 512)], fill=_blend(light, (0, 0, 0), 0.6))


def render(genre: str, style: str) -> bytes:
    """Return the PNG bytes of the placeholder for ``genre`` and ``style``."""
    dark, light = COLOURS.get(genre, COLOURS["generic"])
    image = Image.new("RGB", SIZE, dark)
    draw = ImageDraw.Draw(image)
    _background(draw, dark, light)
    _motif(draw, style, light)
    title = GENRES.get(genre, {}).get("title", "Adventure")
    big, small = ImageFont.load_default(size=44), ImageFont.load_default(size=22)
    draw.text((SIZE[0] // 2, 200), title, fill=light, font=big, anchor="mm")
    draw.text((SIZE[0] // 2, 260), "No scene image this time. You can ask for another.",
              fill=(235, 235, 235), font=small, anchor="mm")
    buffer = BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    targets = [(g, s) for g in GENRES for s in STYLES] + [("generic", "generic")]
    for genre, style in targets:
        name = "generic.png" if genre == "generic" else f"{genre}-{style}.png"
        data = render(genre, style)
        (OUT / name).write_bytes(data)
        print(f"{name:40} {len(data):6} B  {hashlib.sha256(data).hexdigest()[:12]}")


if __name__ == "__main__":
    main()
