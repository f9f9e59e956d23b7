"""Tests for pacscore.converters.registry: finding a statement's command."""

from twisted.plugin import IPlugin
from twisted.trial import unittest
from zope.interface import implementer
from zope.interface.verify import verifyObject

from pacscore.converters.registry import CommandRegistry
from pacscore.interfaces import IConverterCommand
from plugins import pacs_commands_flow
from tests.pacscore.converters.lines import BUILT_IN

# The manual's scope of each built-in command of plugins/pacs_commands_flow.py.
SCOPES = {
    "nop": "IE", "stop": "IE", "silentstop": "IE", "return": "IE", "destroy": "I", "reject": "I",
    "defer": "E", "call": "I", "storage": "I", "compression": "I", "testmode": "IE", "write": "IE",
    "append": "IE", "system": "IE", "mkdir": "IE", "rm": "IE", "ifnotempty": "IE", "ifempty": "IE", "ifequal": "IE",
    "ifnotequal": "IE", "ifmatch": "IE", "ifnotmatch": "IE", "ifnumequal": "IE", "ifnumnotequal": "IE",
    "ifnumgreater": "IE", "ifnumless": "IE", "between": "IE",
}


@implementer(IConverterCommand)
class Named:
    scope = "IE"
    condition = False

    def __init__(self, name):
        self.name = name

    def parse(self, arguments, where):
        return arguments

    def run(self, arguments, context):
        return None


class Other(Named):
    """The same, as another class, for the duplicate message."""


class RegistryTests(unittest.TestCase):

    def test_plugins(self):
        """By default every installed IConverterCommand plugin is there."""
        commands = CommandRegistry().commands
        self.assertIs(commands["stop"], pacs_commands_flow.stop)
        self.assertIs(commands["ifequal"], pacs_commands_flow.ifEqual)
        self.assertIs(commands["between"], pacs_commands_flow.between)

    def test_builtIn(self):
        """Each built-in is a plugin with the manual's scope; the tests are conditions."""
        self.assertEqual({command.name: command.scope for command in BUILT_IN}, SCOPES)
        for command in BUILT_IN:
            self.assertTrue(verifyObject(IConverterCommand, command))
            self.assertTrue(IPlugin.providedBy(command))
            self.assertEqual(command.condition, command.name.startswith("if") or command.name == "between")

    def test_duplicate(self):
        for first, second in [("forward to", "forward to"), ("forward to", "Forward   TO")]:
            error = self.assertRaises(ValueError, CommandRegistry, [Named(first), Other(second)])
            self.assertIn("'forward to'", str(error))
            self.assertIn("test_registry.Named", str(error))
            self.assertIn("test_registry.Other", str(error))

    def test_lookup(self):
        """(statement, name of the command found or None, its arguments)"""
        names = ["forward", "forward compressed as", "nop", "lua:", "ifequal", "set", "setifempty"]
        registry = CommandRegistry([Named(name) for name in names])
        cases = [
            ("forward to SERVER1", "forward", "to SERVER1"),
            ("forward compressed as j2 to SERVER2", "forward compressed as", "j2 to SERVER2"),
            ("FORWARD   Compressed\tAS j2 to SERVER2", "forward compressed as", "j2 to SERVER2"),
            ("forward compressedas j2", "forward", "compressedas j2"),
            ("forwarding", None, None),
            ("  nop   any text %i  ", "nop", "any text %i"),
            ("nop", "nop", ""),
            ("nopx", None, None),
            ("nop.exe", None, None),  # programs, as export converters run them
            ("nop-files %f", None, None),
            ("nop/bin %f", None, None),
            ('ifequal"%m","CT"', "ifequal", '"%m","CT"'),
            ("lua:print(1)", "lua:", "print(1)"),
            ("LUA: print(1)", "lua:", "print(1)"),
            ("lua :print(1)", None, None),
            ("setifempty x to y", "setifempty", "x to y"),
            ("set x to y", "set", "x to y"),
            ("unknown", None, None),
            ("", None, None),
        ]
        for statement, name, arguments in cases:
            found = registry.lookup(statement)
            if name is None:
                self.assertIsNone(found, statement)
            else:
                self.assertEqual((found[0].name, found[1]), (name, arguments), statement)
