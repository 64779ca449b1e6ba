"""Packaged YAML defaults (loaded with importlib.resources, so an installed taxolens finds them)."""
