"""Tests for pacscore."""
