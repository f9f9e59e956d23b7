"""Tests for the benchmarks in bench/ (not run by the suite themselves: their set-up must keep working)."""
