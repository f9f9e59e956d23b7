"""Tests for pacscore/dicom."""
