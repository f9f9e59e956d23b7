"""Benchmarks (never timed tests): each measures pacs against a reference run in the same process tree."""
