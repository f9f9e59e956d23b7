"""Tests for tap."""
