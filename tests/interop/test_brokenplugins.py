"""Broken third-party plugins: a running ``twistd -n pacs`` with a
``plugins`` folder on its PYTHONPATH whose modules are not usable starts
with the other plugins, answers an echo and names each broken one in a
single log line."""

import os

from twisted.trial import unittest

from tests.interop.server import PacsServer
from tests.pacscore.test_pluginset import writePluginModules

INCOMPLETE = {
    # no name, parse or run
    "wrong_command": """
        @implementer(IPlugin, IConverterCommand)
        class Wrong:
            scope = "I"
        wrong = Wrong()
        """,
    # sorts before sqlite but has no selectedBy
    "wrong_driver": """
        @implementer(IPlugin, IDatabaseDriver)
        class Half:
            name = "aaahalf"
        half = Half()
        """,
    "wrong_control": """
        @implementer(IPlugin, IControlCommand)
        class Nameless:
            usage = "--nameless"
            readOnly = True
            def run(self, arguments, context):
                return ""
        nameless = Nameless()
        """,
    # names that are not words: the driver's sorted before the others
    "unnamed": """
        from plugins.pacs_sqlite import SQLiteDriver
        @implementer(IPlugin, IConverterCommand)
        class Unnamed:
            name = None; scope = "IE"; condition = False
            def parse(self, arguments, where): return arguments
            def run(self, parsed, context): return None
        unnamed = Unnamed()
        class Numbered(SQLiteDriver):
            name = 5
        numbered = Numbered()
        """,
}


class BrokenPluginTests(unittest.TestCase):

    def serverWith(self, modules):
        """A started server with a ``plugins`` folder of ``modules`` (name:
        source after tests.pacscore.test_pluginset.HEADER) on its
        PYTHONPATH."""
        workdir = os.path.abspath(self.mktemp())
        folder = os.path.join(workdir, "site", "plugins")
        os.makedirs(folder)
        writePluginModules(folder, modules)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.path.dirname(folder),
                                                                          os.environ.get("PYTHONPATH")])))
        server = PacsServer(os.path.join(workdir, "pacs"), env=env)
        server.start()
        self.addCleanup(server.stop)
        self.assertEqual(server.echo().returncode, 0)
        return server

    def linesNaming(self, server, text):
        return [line for line in server.log().splitlines() if text in line]

    def test_incompletePluginsAreSkipped(self):
        """A converter command, database driver and control command that
        lack what their interface asks for, or whose name is not a word, are
        each named once, with what is wrong; the SQLite driver and the
        built-in commands serve."""
        server = self.serverWith(INCOMPLETE)
        for plugin, problem in (("plugins.wrong_command.Wrong", "IConverterCommand (no name, no condition, "
                                                                 "no parse, no run)"),
                                ("plugins.wrong_driver.Half", "IDatabaseDriver (no description, "),
                                ("plugins.wrong_control.Nameless", "IControlCommand (no name)"),
                                ("plugins.unnamed.Unnamed", "IConverterCommand (name None is not a word)"),
                                ("plugins.unnamed.Numbered", "IDatabaseDriver (name 5 is not a word)")):
            [line] = self.linesNaming(server, plugin)
            self.assertIn(f"is not a usable {problem}", line)
            self.assertIn("it is not available", line)
        self.assertNotIn("Traceback", server.log())
        status = server.dgate("--display_status:")
        self.assertEqual(status.returncode, 0, status.stdout + status.stderr)

    def test_clashingPluginsAreSkipped(self):
        """A plugin module that imports a built-in command to reuse it does
        not make it a second command, and a third-party converter command
        or control command named as a built-in one is left out with one
        line naming both: the server starts and the built-ins serve."""
        server = self.serverWith({"wrapping": """
            from plugins.pacs_commands_dataset import setCommand
            @implementer(IPlugin, IConverterCommand)
            class SetUpper:
                name = "setupper"; scope = "IE"; condition = False
                def parse(self, arguments, where): return setCommand.parse(arguments, where)
                def run(self, parsed, context): return setCommand.run(parsed, context)
            setUpper = SetUpper()
            """, "zz_clashing": """
            @implementer(IPlugin, IConverterCommand)
            class Nop:
                name = "nop"; scope = "IE"; condition = False
                def parse(self, arguments, where): return arguments
                def run(self, parsed, context): return None
            nop = Nop()
            @implementer(IPlugin, IControlCommand)
            class Status:
                name = "display_status"; usage = "--display_status:"
                def run(self, arguments, context): return "not the built-in"
            status = Status()
            """})
        for plugin, interface, name in (("plugins.zz_clashing.Nop", "IConverterCommand", "nop"),
                                        ("plugins.zz_clashing.Status", "IControlCommand", "display_status")):
            [line] = self.linesNaming(server, plugin)
            self.assertIn(f"plugin {plugin} is an {interface} named {name!r} as ", line)
            self.assertIn("; it is not available", line)
        self.assertEqual(self.linesNaming(server, "SetCommand"), [])
        status = server.dgate("--display_status:")
        self.assertEqual(status.returncode, 0, status.stdout + status.stderr)
        self.assertNotIn("not the built-in", status.stdout)

    def test_failingSelectedByIsSkipped(self):
        """An installed driver whose selectedBy raises, sorted before the
        SQLite one, is logged with its error and left out: the SQLite
        driver that dicom.ini selects serves."""
        server = self.serverWith({"failing_driver": """
            from plugins.pacs_sqlite import SQLiteDriver
            class Failing(SQLiteDriver):
                name = "aaafailing"
                def selectedBy(self, configuration): raise KeyError("AAAFailing")
            failing = Failing()
            """})
        [line] = self.linesNaming(server, "plugins.failing_driver.Failing")
        self.assertIn("plugin plugins.failing_driver.Failing: selectedBy failed; it is not available", line)
        self.assertIn("KeyError: 'AAAFailing'", server.log())
        self.assertEqual(len(self.linesNaming(server, "index: sqlite sqlite:")), 1)
