"""Tests for pacscore.converters."""
