"""Tests for pacscore.converters.luafiles: LuaAllowUnsafe read as Conquest reads its numbers."""

from twisted.trial import unittest

from pacscore.config.errors import ConfigError
from pacscore.config.ini import DicomIni
from pacscore.converters.luafiles import unsafeAllowed


class UnsafeAllowedTests(unittest.TestCase):

    def test_readAsANumber(self):
        """A comment after the 1 leaves scripts unsandboxed (not silently
        sandboxed); text that is no number is an error, not off."""
        for value, expected in (("1", True), ("1 # trusted scripts", True), ("0 ; sandboxed", False), ("", False)):
            self.assertEqual(unsafeAllowed(DicomIni.fromString(f"LuaAllowUnsafe = {value}\n")), expected, value)
        self.assertFalse(unsafeAllowed(DicomIni.fromString("")))
        self.assertFalse(unsafeAllowed(None))
        self.assertRaises(ConfigError, unsafeAllowed, DicomIni.fromString("LuaAllowUnsafe = yes\n"))
