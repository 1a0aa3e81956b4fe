"""The game's catalog: the genres and art styles a player can choose."""

from __future__ import annotations

GENRES: dict[str, dict[str, str]] = {
    "fantasy": {"title": "Fantasy", "blurb": "Swords, sorcery and forgotten kingdoms."},
    "scifi": {"title": "Science fiction", "blurb": "Starships, strange worlds and rogue AIs."},
    "horror": {"title": "Horror", "blurb": "Something is wrong with the old house."},
    "mystery": {"title": "Mystery", "blurb": "A crime, a city in the rain, a lie."},
    "cyberpunk": {"title": "Cyberpunk", "blurb": "Neon, chrome and corporate secrets."},
    "post_apocalyptic": {"title": "Post-apocalyptic", "blurb": "Survive the ruins."},
}

STYLES: dict[str, dict[str, str]] = {
    "painterly": {"title": "Painterly", "hint": "rich digital oil painting, dramatic light"},
    "pixel_art": {"title": "Pixel art", "hint": "detailed 16-bit pixel art, limited palette"},
    "comic": {"title": "Comic", "hint": "inked comic-book panel, bold lines, flat colour"},
    "photoreal": {"title": "Photoreal", "hint": "cinematic photograph, natural light"},
    "watercolor": {"title": "Watercolour", "hint": "loose watercolour illustration, soft edges"},
}


# Background and accent colour of each genre, for images drawn without a model.
COLOURS: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "fantasy": ((34, 52, 38), (200, 170, 90)),
    "scifi": ((12, 20, 48), (110, 200, 240)),
    "horror": ((20, 10, 12), (170, 40, 40)),
    "mystery": ((28, 30, 40), (210, 190, 150)),
    "cyberpunk": ((30, 8, 40), (255, 60, 200)),
    "post_apocalyptic": ((60, 44, 28), (230, 150, 70)),
    "generic": ((36, 36, 44), (190, 190, 200)),
}


def style_hint(style: str) -> str:
    """Return the words that describe ``style`` to an image model."""
    return STYLES.get(style, {}).get("hint", "detailed illustration")


def scene_prompt(prompt: str, genre: str, style: str) -> str:
    """Return the full image prompt for a scene: the scene, its genre and the art style."""
    genre_title = GENRES.get(genre, {}).get("title", "adventure").lower()
    return f"{prompt}\n\nA {genre_title} scene. Art style: {style_hint(style)}. No text."


def as_json() -> dict[str, list[dict[str, str]]]:
    """Return the catalog as the API serves it."""
    return {
        "genres": [{"id": key, **value} for key, value in GENRES.items()],
        "styles": [{"id": key, "title": value["title"]} for key, value in STYLES.items()],
    }
