"""Tests for pacscore/config."""
