"""Benchmark definitions shipped with the repository, the constructed landscape, and the speed suite."""
