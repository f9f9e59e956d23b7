"""Tests for pacscore.pluginset: plugins checked before any registry uses
them, a broken one left out with one log line naming it."""

import importlib
import itertools
import os
import sys
import textwrap

from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.plugin import getCache
from twisted.trial import unittest

from pacscore.interfaces import IControlCommand, IConverterCommand
from pacscore.pluginset import PluginSet

_packages = itertools.count()

HEADER = """\
from twisted.plugin import IPlugin
from zope.interface import implementer
from pacscore.interfaces import IControlCommand, IConverterCommand, IDatabaseDriver
"""


def writePluginModules(folder, modules):
    """Write plugin modules ``modules`` (name: source after HEADER) into
    ``folder``."""
    for name, source in modules.items():
        with open(os.path.join(folder, name + ".py"), "w") as f:
            f.write(HEADER + textwrap.dedent(source))


GOOD = """
@implementer(IPlugin, IConverterCommand)
class Good:
    name = "good"; scope = "IE"; condition = False
    def parse(self, arguments, where): return arguments
    def run(self, arguments, context): pass
good = Good()
"""


def pluginPackage(testCase, **modules):
    """A plugin package of ``modules`` (name: source after HEADER), imported,
    gone again after ``testCase``."""
    root = os.path.abspath(testCase.mktemp())
    name = f"pacs_pluginset_test{next(_packages)}"
    os.makedirs(os.path.join(root, name))
    open(os.path.join(root, name, "__init__.py"), "w").close()
    writePluginModules(os.path.join(root, name), modules)
    sys.path.insert(0, root)
    testCase.addCleanup(sys.path.remove, root)
    testCase.addCleanup(lambda: [sys.modules.pop(key) for key in list(sys.modules)
                                 if key == name or key.startswith(name + ".")])
    return importlib.import_module(name)


def errors(events):
    """The formatted warnings and errors of the captured ``events``."""
    return [formatEvent(event) for event in events if event["log_level"] >= LogLevel.warn]


class PluginSetTests(unittest.TestCase):

    def package(self, **modules):
        return pluginPackage(self, **modules)

    def test_incompletePluginIsLeftOut(self):
        """A plugin without name, parse and run is left out with one line
        that names it and what it lacks; the good one is kept."""
        package = self.package(good=GOOD, wrong="""
            @implementer(IPlugin, IConverterCommand)
            class Wrong:
                scope = "I"; condition = False
            wrong = Wrong()
            """)
        plugins = PluginSet(package)
        with capturedLogs() as events:
            self.assertEqual([command.name for command in plugins.providing(IConverterCommand)], ["good"])
            self.assertEqual([command.name for command in plugins.providing(IConverterCommand)], ["good"])
        [line] = errors(events)
        self.assertIn(f"{package.__name__}.wrong.Wrong", line)
        self.assertIn("is not a usable IConverterCommand (no name, no parse, no run); it is not available", line)

    def test_wrongMethodIsNamed(self):
        """A method that does not take the interface's arguments is named
        with what is wrong with it."""
        package = self.package(control="""
            @implementer(IPlugin, IControlCommand)
            class Short:
                name = "short"; usage = "--short"; readOnly = True
                def run(self): return ""
            short = Short()
            """)
        with capturedLogs() as events:
            self.assertEqual(PluginSet(package).providing(IControlCommand), [])
        [line] = errors(events)
        self.assertIn(f"{package.__name__}.control.Short is not a usable IControlCommand (run: ", line)

    def test_optionalAttributesAreOptional(self):
        """A converter command need not say whether it reachesOutside, as
        the interface promises."""
        package = self.package(good=GOOD)
        with capturedLogs() as events:
            [command] = PluginSet(package).providing(IConverterCommand)
        self.assertFalse(hasattr(command, "reachesOutside"))
        self.assertEqual(errors(events), [])

    def test_readOnlyIsOptional(self):
        """A control command need not say whether it is readOnly (absent:
        False, not run by sandboxed Lua scripts), as before the check."""
        package = self.package(control="""
            @implementer(IPlugin, IControlCommand)
            class Hello:
                name = "hello"; usage = "--hello"
                def run(self, arguments, context): return "hello"
            hello = Hello()
            """)
        with capturedLogs() as events:
            [command] = PluginSet(package).providing(IControlCommand)
        self.assertFalse(hasattr(command, "readOnly"))
        self.assertEqual(errors(events), [])

    def test_aClassOrModulePluginIsNamed(self):
        """A plugin that is a class (declared with ``@provider``) or a
        module (one that ``moduleProvides``, imported by a plugin module) is
        named itself in the line, not as its type, with the plugin module
        holding it when that is another."""
        package = self.package(modular="""
            from zope.interface import moduleProvides
            moduleProvides(IPlugin, IControlCommand)
            name = "modular"
            """, importing="""
            from . import modular
            """, classy="""
            from zope.interface import provider
            @provider(IPlugin, IConverterCommand)
            class Classy:
                name = "classy"; scope = "IE"; condition = False
                @staticmethod
                def parse(arguments, where): return arguments
            """)
        with capturedLogs() as events:
            self.assertEqual(PluginSet(package).providing(IConverterCommand), [])
            self.assertEqual(PluginSet(package).providing(IControlCommand), [])
        self.assertEqual(errors(events), [
            f"plugin {package.__name__}.classy.Classy is not a usable IConverterCommand (no run); it is not available",
            f"plugin {package.__name__}.modular (in {package.__name__}.importing) is not a usable "
            f"IControlCommand (no usage, no run); "
            f"it is not available"])

    def test_importedPluginIsOne(self):
        """A plugin module that imports another's plugin (to reuse a
        built-in command) holds the same object: it is one plugin, with no
        line."""
        package = self.package(good=GOOD, wrapping="""
            from .good import good
            @implementer(IPlugin, IConverterCommand)
            class Wrapping:
                name = "wrapping"; scope = "IE"; condition = False
                def parse(self, arguments, where): return good.parse(arguments, where)
                def run(self, arguments, context): return good.run(arguments, context)
            wrapping = Wrapping()
            """)
        with capturedLogs() as events:
            commands = PluginSet(package).providing(IConverterCommand)
        self.assertEqual(sorted(command.name for command in commands), ["good", "wrapping"])
        self.assertEqual(errors(events), [])

    def test_sameNameLeftOut(self):
        """Of two plugins of one interface with one name (in any case or
        spacing), the one found later is left out with one line naming both;
        the other is kept."""
        control = """
            @implementer(IPlugin, IControlCommand)
            class {0}:
                name = "{1}"; usage = "--good"
                def run(self, arguments, context): return ""
            good = {0}()
            """
        for interface, first, second in (
                (IConverterCommand, GOOD, GOOD.replace("Good", "Again").replace('"good"', '" GOOD "')),
                (IControlCommand, control.format("Good", "good"), control.format("Again", "Good"))):
            package = self.package(a_first=first, b_second=second)
            with capturedLogs() as events:
                [kept] = PluginSet(package).providing(interface)
            self.assertIs(kept, package.a_first.good)
            self.assertEqual(errors(events), [
                f"plugin {package.__name__}.b_second.Again is an {interface.__name__} named 'good' as "
                f"{package.__name__}.a_first.Good is; it is not available"])

    def test_sameNameInAnotherModuleIsNamed(self):
        """Two objects of one class (held by two plugin modules) named
        alike are told apart by the plugin modules holding them."""
        package = self.package(a_first=GOOD, b_second="""
            from .a_first import Good
            again = Good()
            """)
        with capturedLogs() as events:
            [kept] = PluginSet(package).providing(IConverterCommand)
        self.assertIs(kept, package.a_first.good)
        self.assertEqual(errors(events), [
            f"plugin {package.__name__}.a_first.Good (in {package.__name__}.b_second) is an IConverterCommand "
            f"named 'good' as {package.__name__}.a_first.Good is; it is not available"])

    def sharedFolder(self, cached, added):
        """A plugin package whose one folder holds pacs's own modules and
        others (as a non-editable install's ``site-packages/plugins``):
        ``cached`` (name: source) written and in a dropin.cache first when
        there are any, then ``added``, unknown to that cache."""
        package = self.package(**cached)
        if cached:
            getCache(package)
            self.assertTrue(os.path.exists(os.path.join(package.__path__[0], "dropin.cache")))
        writePluginModules(package.__path__[0], added)
        return package

    def test_pacsOwnPluginWinsWhateverTheCache(self):
        """A third-party module named to sort before pacs's own
        (``pacs_*``) does not replace a built-in plugin of the same name,
        whether the dropin.cache is built anew or lists it first: the
        built-in is kept, and the line names both."""
        third = GOOD.replace("Good", "Third")
        for cached, added in (({}, {"mypackage_plugins": third, "pacs_commands": GOOD}),
                              ({"mypackage_plugins": third}, {"pacs_commands": GOOD})):
            package = self.sharedFolder(cached, added)
            self.assertEqual(list(getCache(package)), ["mypackage_plugins", "pacs_commands"])
            with capturedLogs() as events:
                [kept] = PluginSet(package).providing(IConverterCommand)
            self.assertEqual(type(kept).__module__, f"{package.__name__}.pacs_commands")
            self.assertEqual(errors(events), [
                f"plugin {package.__name__}.mypackage_plugins.Third is an IConverterCommand named 'good' as "
                f"{package.__name__}.pacs_commands.Good is; it is not available"])

    def test_othersAreTakenByModuleName(self):
        """Of two plugins named alike, neither pacs's own, the one in the
        module first by name is kept, whatever order the dropin.cache lists
        their modules in."""
        package = self.sharedFolder({"z_old": GOOD.replace("Good", "Old")}, {"a_new": GOOD})
        self.assertEqual(list(getCache(package)), ["z_old", "a_new"])
        with capturedLogs() as events:
            [kept] = PluginSet(package).providing(IConverterCommand)
        self.assertIs(kept, package.a_new.good)
        self.assertEqual(len(errors(events)), 1)

    def test_nameNotAWord(self):
        """A plugin whose name is not a string of some word (None, a number,
        empty, blank) is left out with one line naming it; the good one is
        kept."""
        package = self.package(good=GOOD, names="""
            from .good import Good
            class Renamed(Good):
                def __init__(self, name): self.name = name
            none, number, empty, blank = Renamed(None), Renamed(5), Renamed(""), Renamed("  ")
            """)
        with capturedLogs() as events:
            self.assertEqual(PluginSet(package).providing(IConverterCommand), [package.good.good])
        self.assertEqual(sorted(errors(events)), sorted(
            f"plugin {package.__name__}.names.Renamed is not a usable IConverterCommand (name {name!r} is not "
            f"a word); it is not available" for name in (None, 5, "", "  ")))
