"""Helpers shared by the test suite and the benchmarks (test data, not server code)."""
