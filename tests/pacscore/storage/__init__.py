"""Tests for pacscore/storage."""
