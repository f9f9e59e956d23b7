"""Tests for pacscore/control."""
