"""Tools on top of every stage: the taxolens command line, the demo and the benchmarks."""
