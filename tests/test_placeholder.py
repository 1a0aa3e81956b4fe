import struct

import pytest

from dungeon.catalog import GENRES, STYLES
from dungeon.images.types import ImageRequest
from providers.placeholder import PlaceholderProvider


def png_size(data):
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("genre", GENRES)
@pytest.mark.parametrize("style", STYLES)
def test_every_genre_and_style_has_its_own_real_png(genre, style):
    provider = PlaceholderProvider()
    image = provider.generate(ImageRequest("x", genre, style))
    assert png_size(image.data) == (768, 512)
    assert image.placeholder and image.content_type == "image/png"
    assert image.data != provider.generic


def test_unknown_genre_or_style_gets_the_generic_image():
    provider = PlaceholderProvider()
    assert provider.generate(ImageRequest("x", "western", "comic")).data == provider.generic
    png_size(provider.generic)


def test_placeholders_are_deterministic_and_distinct():
    first, second = PlaceholderProvider(), PlaceholderProvider()
    assert first.images == second.images
    assert len(set(first.images.values())) == len(GENRES) * len(STYLES)


def test_placeholder_never_touches_the_network(requests_mock):
    PlaceholderProvider().generate(ImageRequest("x", "fantasy", "comic"))
    assert requests_mock.call_count == 0
