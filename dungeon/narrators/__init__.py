"""Narrators: plugins that write the story, turn by turn."""
