"""A plugin whose hook name has a typo: loading it must fail loudly."""

import dungeon


@dungeon.hookimpl
def register_image_provider(register):
    raise AssertionError("never called")
