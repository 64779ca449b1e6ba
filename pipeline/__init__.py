"""taxolens pipeline stage."""
