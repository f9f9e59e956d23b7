"""Tests for pacscore.converters.flow: nop, stop, silentstop, return,
destroy, reject, defer and call."""

import os

from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.converters.context import ConverterSyntaxError, Outcome
from pacscore.converters.script import parseScript
from plugins import pacs_commands_dataset as dataset
from tests.pacscore.converters.lines import registry, run
from tests.pacscore.converters.test_lua import luaRegistry, makeContext


def messages(events):
    return [e["log_format"].format(**e) for e in events if "converter" in e]


class SimpleCommandTests(unittest.TestCase):

    def test_outcomes(self):
        """(line, kind, outcome, marks)"""
        cases = [
            ("mark a; nop; mark b", "import", Outcome.CONTINUE, "ab"),
            ("mark a; nop text %i; mark b", "export", Outcome.CONTINUE, "ab"),
            ("mark a; stop; mark b", "import", Outcome.STOP, "a"),
            ("mark a; silentstop; mark b", "export", Outcome.SILENT_STOP, "a"),
            ("mark a; return; mark b", "import", Outcome.STOP, "a"),
            ("mark a; destroy; mark b", "import", Outcome.DESTROY, "a"),
            ("mark a; reject; mark b", "import", Outcome.REJECT, "a"),
            ("mark a; defer; mark b", "export", Outcome.DEFER, "a"),
        ]
        for line, kind, outcome, marks in cases:
            self.assertEqual(run(line, kind=kind)[:2], (outcome, marks), line)

    def test_messages(self):
        """nop logs its expanded text, stop and return log, silentstop does
        not; defer logs a debug line (as Conquest's), so that the log tells
        why an export line never ends."""
        cases = [
            ("nop patient %i", ["ImportConverter3: patient 123"]),
            ("nop", []),
            ("stop", ["ImportConverter3: stop"]),
            ("return", ["ImportConverter3: return"]),
            ("silentstop", []),
        ]
        for line, expected in cases:
            with capturedLogs() as events:
                run(line)
            self.assertEqual(messages(events), expected, line)
        with capturedLogs() as events:
            run("between \"0\", \"24\"; defer", kind="export")
        self.assertEqual([(message, event["log_level"].name) for message, event in zip(messages(events), events)],
                         [("ExportConverter3: defer (the line runs again later)", "debug")])

    def test_reject(self):
        self.assertEqual(run("reject")[2].rejectReason, "rejected by ImportConverter3")

    def test_scopes(self):
        for line, kind in [("destroy", "export"), ("reject", "export"), ("defer", "import"),
                           ("call x", "export")]:
            self.assertRaises(ConverterSyntaxError, parseScript, line, "X", registry(), kind)


class CallTests(unittest.TestCase):

    def setUp(self):
        self.workdir = self.mktemp()
        os.makedirs(self.workdir)

    def called(self, text, name="called.cq"):
        with open(os.path.join(self.workdir, name), "w") as f:
            f.write(text)

    def test_runs(self):
        """Each line of the file runs; blank lines and comments ('#' or ';'
        first, as Conquest skips them) are skipped; the file name is
        expanded and relative to the working folder."""
        self.called("; a Conquest comment, not the statement 'a Conquest comment'\nmark b; mark c\n\n# mark x\n"
                    "  ; mark y\n  mark d\n", "sub.cq")
        self.assertEqual(run("mark a; call %y.cq; mark e", workdir=self.workdir,
                             variables={"x": "", "y": "sub", "z": ""})[:2],
                         (Outcome.CONTINUE, "abcde"))

    def test_return(self):
        """Each line of the file runs as a line of its own, as in Conquest's
        CallImportConverterN: ``stop`` ends that line only; ``return``,
        ``destroy`` and ``reject`` end the file, ``return`` the calling line
        too (and the lines calling that one); the calling line ends too when
        the last line of the file that ran ended with ``stop``."""
        cases = [
            ("mark b; return; mark c\nmark d\n", Outcome.SILENT_STOP, "ab"),
            ("mark b; {ifequal \"1\", \"1\"; return}; mark c\nmark d\n", Outcome.SILENT_STOP, "ab"),
            ("mark b; stop; mark c\nmark d\n", Outcome.CONTINUE, "abde"),
            ("mark b\nsilentstop\nmark d\n", Outcome.CONTINUE, "abde"),
            ("mark b\nmark c; stop; mark x\n", Outcome.SILENT_STOP, "abc"),
            ("mark b\ndestroy\nmark d\n", Outcome.DESTROY, "ab"),
            ("mark b\nreject\nmark d\n", Outcome.REJECT, "ab"),
            ("call inner.cq; mark c\nmark d\n", Outcome.SILENT_STOP, "ai"),
            ("call stopping.cq; mark c\nmark d\n", Outcome.CONTINUE, "asde"),
        ]
        self.called("mark i; return; mark j\n", "inner.cq")
        self.called("mark s; stop; mark t\n", "stopping.cq")
        for text, outcome, marks in cases:
            self.called(text)
            self.assertEqual(run("mark a; call called.cq; mark e", workdir=self.workdir)[:2],
                             (outcome, marks), text)

    def test_aStopGuardsOneLineOfTheFile(self):
        """A guarded line of an anonymising file (``ifempty ...; stop; ...``)
        keeps none of the lines after it from running."""
        self.called('ifempty "%V0008,0080"; stop; set 0008,1040 to "%V0008,0080"\n'
                    'set 0010,0010 to "ANON^PATIENT"\n')
        outcome, _, context = run("call called.cq", workdir=self.workdir,
                                  commands=registry(dataset.setCommand))
        self.assertEqual((outcome, str(context.dataset.PatientName)), (Outcome.CONTINUE, "ANON^PATIENT"))
        self.assertNotIn("InstitutionalDepartmentName", context.dataset)

    def test_aReturnSeenByScriptIsNotTheNextCalls(self):
        """A failed call after a Lua ``script('call ...')`` whose file
        returned is no ``return``: it stops its own line only, and the lines
        after it, and the calling line, go on; nor is a file's line that ran
        such a script, for the lines calling the file."""
        self.called("mark r; return\n", "returning.cq")
        self.called("lua \"script('call returning.cq')\"\ncall missing.cq\nmark f\n")
        context = makeContext(ini="LuaAllowUnsafe = 1\n", configDir=os.path.abspath(self.workdir))
        context.variables["x"] = ""
        script = parseScript("call called.cq; mark t", "ImportConverter3", luaRegistry(), "import")
        with capturedLogs():
            self.assertEqual((script.run(context), context.variables["x"]), (Outcome.CONTINUE, "rft"))
        self.called("lua \"script('call returning.cq')\"; stop\n", "stopping.cq")
        self.called("call stopping.cq; mark o\nmark p\n", "outer.cq")
        context.variables["x"] = ""
        script = parseScript("call outer.cq; mark t", "ImportConverter3", luaRegistry(), "import")
        self.assertEqual((script.run(context), context.variables["x"]), (Outcome.CONTINUE, "rpt"))

    def test_aFileSavedAsAnsiIsReadAsCp1252WithAWarning(self):
        """A call file saved as "ANSI" (cp1252) is read as such: its
        value set as written, one warning
        naming the file and line (it was read as UTF-8 with U+FFFD in the
        place of each accented letter, silently); a UTF-8 file as it is."""
        with open(os.path.join(self.workdir, "ansi.cq"), "wb") as f:
            f.write(b'set 0008,0080 to "H\xf4pital Sainte-Th\xe9r\xe8se"\n')
        with open(os.path.join(self.workdir, "utf8.cq"), "wb") as f:
            f.write('set 0008,1010 to "Station \u00e9t\u00e9"\n'.encode())
        path = os.path.abspath(os.path.join(self.workdir, "ansi.cq"))
        for first in (True, False):  # warned of once
            with capturedLogs() as events:
                outcome, _, context = run("call ansi.cq; call utf8.cq", workdir=self.workdir,
                                          commands=registry(dataset.setCommand))
            self.assertEqual((outcome, context.dataset.InstitutionName, context.dataset.StationName),
                             (Outcome.CONTINUE, "H\u00f4pital Sainte-Th\u00e9r\u00e8se", "Station \u00e9t\u00e9"))
            warnings = [formatEvent(e) for e in events if e["log_level"] == LogLevel.warn]
            self.assertEqual(warnings, [f'{path}:1: not UTF-8: the line is read as Windows\' cp1252 ("ANSI")']
                             if first else [])

    def test_eachLineIsDecodedOnItsOwn(self):
        """A UTF-8 call file with one line saved as "ANSI", here a comment,
        sets its UTF-8 values as written, with a warning naming that line
        (the whole file was read as cp1252: 'åŒ»é™¢ HÃ´pital' stored);
        lines ending in CR alone are lines, as before (they were one line:
        'unexpected ... after the string')."""
        with open(os.path.join(self.workdir, "mixed.cq"), "wb") as f:
            f.write(b'# r\xe9vis\xe9 le 1er mai\nset 0008,1030 to "\xe5\x8c\xbb\xe9\x99\xa2 H\xc3\xb4pital"\n')
        with open(os.path.join(self.workdir, "cr.cq"), "wb") as f:
            f.write(b'set 0008,0080 to "A"\rset 0008,1010 to "B"\r')
        path = os.path.abspath(os.path.join(self.workdir, "mixed.cq"))
        with capturedLogs() as events:
            outcome, _, context = run("call mixed.cq; call cr.cq", workdir=self.workdir,
                                      commands=registry(dataset.setCommand))
        self.assertEqual((outcome, context.dataset.StudyDescription, context.dataset.InstitutionName,
                          context.dataset.StationName), (Outcome.CONTINUE, "\u533b\u9662 H\u00f4pital", "A", "B"))
        self.assertEqual([formatEvent(e) for e in events if e["log_level"] == LogLevel.warn],
                         [f'{path}:1: not UTF-8: the line is read as Windows\' cp1252 ("ANSI")'])

    def test_absolutePath(self):
        self.called("mark b\n")
        path = os.path.abspath(os.path.join(self.workdir, "called.cq"))
        self.assertEqual(run(f"call {path}; mark c")[:2], (Outcome.CONTINUE, "bc"))

    def test_errors(self):
        """A missing file or a syntax error in it is logged, in one line
        naming the file (and line and column), and stops the line."""
        self.called("mark b\nmark c; bogus\n")
        path = os.path.abspath(os.path.join(self.workdir, "called.cq"))
        for line, error in [("mark a; call missing.cq; mark e",
                             f"call {os.path.dirname(path)}/missing.cq: cannot read: No such file or directory"),
                            ("mark a; call called.cq; mark e",
                             f"call {path}: {path}, line 2, column 9: unknown command 'bogus'")]:
            with capturedLogs() as events:
                self.assertEqual(run(line, workdir=self.workdir)[:2], (Outcome.STOP, "a"))
            self.assertEqual([e for e in events if "log_failure" in e], [])
            [message] = [e["log_format"].format(**e) for e in events if e["log_format"].startswith("{converter}: call")]
            self.assertTrue(message.endswith(error), message)

    def test_needsFile(self):
        self.assertRaises(ConverterSyntaxError, parseScript, "call", "X", registry(), "import")
