"""Built-in image providers, each a plugin module registered by import path."""
