"""Plugin modules used by the plugin-loading tests, imported by path like real ones."""

import dungeon
from tests.fakes import FakeProvider


@dungeon.hookimpl
def register_image_providers(register):
    register(FakeProvider("sample"))
