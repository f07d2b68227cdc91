"""Benchmarks: they print their figures and are not part of the test run."""
