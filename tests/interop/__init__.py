"""Tests for interop."""
