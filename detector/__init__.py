"""taxolens detector stage."""
