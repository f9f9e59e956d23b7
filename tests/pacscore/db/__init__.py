"""Tests for pacscore/db."""
