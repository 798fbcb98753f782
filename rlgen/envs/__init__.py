"""Environments (registered on import)."""
