"""Tests for pacscore/codecs."""
