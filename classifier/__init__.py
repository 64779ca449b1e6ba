"""taxolens classifier stage."""
