"""taxolens annotations stage."""
