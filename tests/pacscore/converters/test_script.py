"""Tests for pacscore.converters.script: parsing and running converter lines."""

from twisted.internet.defer import Deferred, fail, succeed
from pydicom import Dataset
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial import unittest
from zope.interface import implementer

from pacscore.converters.context import ConverterSyntaxError, Outcome
from pacscore.converters.script import Block, Conditional, Location, Statement, parseScript
from pacscore.interfaces import IConverterCommand
from tests.pacscore.converters.lines import context, registry, run


@implementer(IConverterCommand)
class Returning:
    """A command named ``name`` whose ``run`` gives ``make()``."""

    scope = "IE"
    condition = False

    def __init__(self, name, make):
        self.name = name
        self.make = make
        self.where = None

    def parse(self, arguments, where):
        self.where = where
        return arguments

    def run(self, arguments, context):
        return self.make()


def explode():
    raise ValueError("boom")


class RunTests(unittest.TestCase):

    def test_lines(self):
        """(line, outcome, the marks of the statements that ran)"""
        cases = [
            ("", Outcome.CONTINUE, ""),
            ("mark a; mark b;", Outcome.CONTINUE, "ab"),
            ("  mark a;; ; mark b  ", Outcome.CONTINUE, "ab"),
            ("MARK a;   Mark b", Outcome.CONTINUE, "ab"),
            ("mark a; stop; mark b", Outcome.STOP, "a"),
            ("mark a; silentstop; mark b", Outcome.SILENT_STOP, "a"),
            ("mark a; destroy; mark b", Outcome.DESTROY, "a"),
            ("{mark a; mark b}; mark c", Outcome.CONTINUE, "abc"),
            ("{mark a; {mark b; {mark c}}; mark d}", Outcome.CONTINUE, "abcd"),
            ('ifequal "1", "2"; {mark a; mark b}; mark c', Outcome.CONTINUE, "c"),
            ('ifequal "1", "1"; {mark a; mark b}; mark c', Outcome.CONTINUE, "abc"),
            ('ifequal "1", "1"; {mark a; {mark b; stop}; mark c}; mark d', Outcome.STOP, "ab"),
            ('ifequal "1", "2"; stop; mark a', Outcome.CONTINUE, "a"),
            ('ifequal "a", "a"; ifnotempty "x"; mark a; mark b', Outcome.CONTINUE, "ab"),
            ('ifequal "a", "a"; ifnotempty ""; mark a; mark b', Outcome.CONTINUE, "b"),
            ('ifequal "a", "b"; ifnotempty "x"; mark a; mark b', Outcome.CONTINUE, "b"),
            ('ifequal "a", "b"; ifnotempty "x"; {mark a; stop}; mark b', Outcome.CONTINUE, "b"),
            ('{ifequal "a", "b"; mark a; mark b}', Outcome.CONTINUE, "b"),
            ('ifequal "a;{b}", "a;{b}"; mark a', Outcome.CONTINUE, "a"),
            ('ifequal "%i", "123"; mark a', Outcome.CONTINUE, "a"),
            ('ifequal "%i", "124"; mark a', Outcome.CONTINUE, ""),
            ('ifnotempty "x" {mark a; mark b}', Outcome.CONTINUE, "ab"),
            # braces inside a statement are its text, as in Conquest
            ("mark a{b}; mark c", Outcome.CONTINUE, "a{b}c"),
            ("{mark a{b}}; mark c", Outcome.CONTINUE, "a{b}c"),
            ("{mark ${x}; mark {a,b}{c}; mark d}", Outcome.CONTINUE, "${x}{a,b}{c}d"),
            ("mark a{; mark b", Outcome.CONTINUE, "a{b"),
            ('ifequal "1", "2"; {mark a{b}; mark c}; mark d', Outcome.CONTINUE, "d"),
        ]
        for line, outcome, marks in cases:
            result = run(line)
            self.assertEqual(result[:2], (outcome, marks), line)

    def test_kinds(self):
        self.assertEqual(run("mark a; defer; mark b", kind="export")[:2], (Outcome.DEFER, "a"))
        self.assertEqual(run("reject", kind="import")[0], Outcome.REJECT)

    def test_tree(self):
        commands = registry()
        script = parseScript('mark a; ifempty ""; { mark b }', "ExportConverter1", commands, "export")
        mark, ifEmpty = commands.commands["mark"], commands.commands["ifempty"]
        self.assertEqual(script.nodes, (
            Statement(mark, "a", 1),
            Conditional(Statement(ifEmpty, ("",), 9), Block((Statement(mark, "b", 23),), 21))))
        self.assertEqual((script.key, script.kind), ("ExportConverter1", "export"))

    def test_location(self):
        """Commands get where they are, with the registry and kind of the line."""
        probe = Returning("probe", lambda: Outcome.CONTINUE)
        commands = registry(probe)
        parseScript("mark a;  probe x", "ImportConverter7", commands, "import")
        self.assertEqual(probe.where, "ImportConverter7, column 10")
        self.assertIsInstance(probe.where, Location)
        self.assertEqual((probe.where.key, probe.where.column, probe.where.registry, probe.where.kind),
                         ("ImportConverter7", 10, commands, "import"))

    def test_colonName(self):
        """A name ending with ':' takes the rest of the line."""
        lua = Returning("lua:", lambda: Outcome.CONTINUE)
        script = parseScript('mark a; lua: x = "}"; y = {1}', "ImportConverter0", registry(lua), "import")
        self.assertEqual(script.nodes[1], Statement(lua, 'x = "}"; y = {1}', 9))

    def test_firedDeferred(self):
        deferring = Returning("later", lambda: succeed(Outcome.DEFER))
        self.assertEqual(run("mark a; later; mark b", kind="export", commands=registry(deferring))[:2],
                         (Outcome.DEFER, "a"))

    def test_unfiredDeferred(self):
        waiting = Returning("wait", Deferred)
        error = self.assertRaises(RuntimeError, run, "wait", commands=registry(waiting))
        self.assertIn("'wait'", str(error))

    def test_notAnOutcome(self):
        odd = Returning("odd", lambda: "stop")
        error = self.assertRaises(TypeError, run, "odd", commands=registry(odd))
        self.assertIn("'odd'", str(error))

    def test_failures(self):
        """A command that raises (or fails its Deferred) is logged and ends the line."""
        commands = registry(Returning("explode", explode),
                            Returning("failing", lambda: fail(ValueError("boom"))),
                            Returning("test", explode))
        commands.commands["test"].condition = True
        for line in ("mark a; explode; mark b", "mark a; failing; mark b", "mark a; test; mark b; mark c"):
            with capturedLogs() as events:
                self.assertEqual(run(line, commands=commands)[:2], (Outcome.STOP, "a"), line)
            [event] = [e for e in events if "log_failure" in e]
            self.assertEqual(event["key"], "ImportConverter3")
            self.assertEqual(event["column"], 9)
            self.assertIn(event["command"], ("explode", "failing", "test"))
            self.assertIsInstance(event["log_failure"].value, ValueError)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 3)

    def test_replacedDataset(self):
        """A command that replaces context.dataset (with anything: text, a
        new Dataset) rather than changing it in place is logged naming it,
        the data set is put back and the line ends, as when it raises."""
        for replacement in ("not a dataset", None, Dataset()):
            @implementer(IConverterCommand)
            class Replacing(Returning):
                def run(self, arguments, context):
                    context.dataset = replacement
                    context.changed = True

            lineContext = context()
            dataset = lineContext.dataset
            script = parseScript("mark a; swap; mark b", "ImportConverter3",
                                 registry(Replacing("swap", None)), "import")
            with capturedLogs() as events:
                self.assertEqual(script.run(lineContext), Outcome.STOP)
            self.assertIs(lineContext.dataset, dataset)
            self.assertEqual(lineContext.variables["x"], "a")
            self.assertEqual([formatEvent(event) for event in events], [
                "ImportConverter3, column 9: converter command 'swap' failed: it replaced context.dataset with "
                f"{type(replacement).__name__} {replacement!r} instead of changing the data set in place"])
            self.assertEqual(events[0]["log_level"], LogLevel.error)

    def test_execute(self):
        """``execute`` also tells which command ended the line."""
        commands = registry()
        script = parseScript("mark a; { stop }", "ImportConverter0", commands, "import")
        self.assertEqual(script.execute(context()), (Outcome.STOP, commands.commands["stop"]))
        script = parseScript("mark a", "ImportConverter0", commands, "import")
        self.assertEqual(script.execute(context()), (Outcome.CONTINUE, None))


class SyntaxErrorTests(unittest.TestCase):

    def test_errors(self):
        """(line, kind, column, part of the message)"""
        cases = [
            ("bogus", "import", 1, "unknown command 'bogus'"),
            ("mark a; bogus x", "import", 9, "unknown command 'bogus'"),
            ("nopx", "import", 1, "unknown command 'nopx'"),
            ("{mark a", "import", 1, "'{' has no matching '}'"),
            ("mark a; { {mark b}", "import", 9, "'{' has no matching '}'"),
            ("mark a }", "import", 8, "'}' has no matching '{'"),
            ("{mark a}}", "import", 9, "'}' has no matching '{'"),
            ("mark a{b}}", "import", 10, "'}' has no matching '{'"),
            ('mark a; ifequal "a", "a"', "import", 9, "'ifequal' is not followed by a statement"),
            ('mark a; ifequal "a", "a";;', "import", 9, "'ifequal' is not followed by a statement"),
            ('{ifequal "a", "a"}; mark b', "import", 2, "'ifequal' is not followed by a statement"),
            ('ifequal "a, "b"', "import", 15, "unterminated string"),
            ('nop "abc', "import", 5, "unterminated string"),
            ("defer", "import", 1, "'defer' is not allowed in import converters"),
            ("mark a; destroy", "export", 9, "'destroy' is not allowed in export converters"),
            ("stop now", "import", 1, "'stop' takes no arguments"),
            ('ifequal "a"', "import", 1, "expected 2 quoted strings, got 1"),
        ]
        for line, kind, column, message in cases:
            error = self.assertRaises(ConverterSyntaxError, parseScript, line, "ImportConverter5",
                                      registry(), kind)
            self.assertTrue(str(error).startswith(f"ImportConverter5, column {column}: "), (line, str(error)))
            self.assertIn(message, str(error), line)

    def test_parseBug(self):
        """A command whose parse raises anything but ConverterSyntaxError (a
        plugin's bug) gives a syntax error naming the key, the column, the
        command and its plugin, with the exception."""
        @implementer(IConverterCommand)
        class Buggy(Returning):
            def parse(self, arguments, where):
                raise self.make()

        for exception in (ValueError("parse blew up"), KeyError("AE"), TypeError("no")):
            error = self.assertRaises(ConverterSyntaxError, parseScript, "nop; buggy x", "ImportConverter0",
                                      registry(Buggy("buggy", lambda: exception)), "import")
            self.assertEqual(str(error), f"ImportConverter0, column 6: converter command 'buggy' ({__name__}."
                                         f"SyntaxErrorTests.test_parseBug.<locals>.Buggy) failed to parse: "
                                         f"{type(exception).__name__}: {exception}")

    def test_kind(self):
        self.assertRaises(ValueError, parseScript, "nop", "QueryConverter0", registry(), "query")
