"""Tests for pacscore.converters.shellquoting: a %-variable's value reaches
the program as data wherever it stands in the template, never as shell
syntax; the template's own text stays shell syntax."""

import os
import re
import shutil
import subprocess

from pydicom import Dataset
from twisted.trial import unittest

from pacscore.converters.context import ConverterContext
from pacscore.converters.shellquoting import shellCommand

HOSTILE = ["x;touch pwned", "$(touch pwned)", "`touch pwned`", "a'b", 'a"b', "a\\", "a b  c", "$HOME",
           "x\ntouch pwned #", "'$(touch pwned)'", '"; touch pwned; "', "*", ""]
SHELLS = [shell for shell in ("/bin/sh", shutil.which("dash"), shutil.which("bash")) if shell]



def safe(value):
    """``value`` as it may stand within ``${...}`` or ``$((...))``."""
    return re.sub(r"[^A-Za-z0-9._,:/=+@^ -]", "_", value)


def contextFor(patientID, name="Doe^John", filename="/data/1.dcm"):
    dataset = Dataset()
    dataset.PatientID = patientID
    dataset.PatientName = name
    return ConverterContext("export", dataset, filename=filename, converterName="ExportConverter0")


class ShellCommandTests(unittest.TestCase):

    def setUp(self):
        self.folder = os.path.abspath(self.mktemp())
        os.makedirs(self.folder)

    def words(self, template, patientID, shell="/bin/sh", **values):
        """The arguments ``printf`` gets from ``template`` for this patient,
        run by ``shell``; no file 'pwned' may appear."""
        command = shellCommand(f"printf '<%%s>' {template}", contextFor(patientID, **values))
        result = subprocess.run([shell, "-c", command], cwd=self.folder, capture_output=True, text=True)
        self.assertEqual(os.listdir(self.folder), [], command)
        return result.stdout

    def test_valuesAreDataWhereverTheyStand(self):
        """(template, what printf prints for value v): bare, double- and
        single-quoted, joined to other text, in $(...) and backquotes, in a
        comment, after a backslash, right before a '#', in $((...)) and
        ${...}."""
        cases = [
            ("%i", lambda v: f"<{v}>" if v else "<>"),
            ("x%iy", lambda v: f"<x{v}y>"),
            ('"%i"', lambda v: f"<{v}>"),
            ('"a %i b"', lambda v: f"<a {v} b>"),
            ("'%i'", lambda v: f"<{v}>"),
            ("'%i'\"%i\"%i", lambda v: f"<{v * 3}>"),
            ('"$(printf %%s %i)"', lambda v: f"<{v}>" if v else "<>"),
            ('"$(printf %%s "%i")"', lambda v: f"<{v.rstrip(chr(10))}>"),
            ("`printf %%s %i`", lambda v: "".join(f"<{w}>" for w in v.split()) if v.strip() else "<>"),
            ("'(' %i ')'", lambda v: f"<(><{v}><)>" if v else "<(><)>"),
            ("\\%i", lambda v: f"<\\{v}>"),
            ('"\\%i"', lambda v: f"<\\{v}>"),
            ("end # %i", lambda v: "<end>"),
            ("%i#%i", lambda v: f"<{v}#{v}>" if v else "<>"),
            ("$((%i))", lambda v: "<0>"),
            ('"${NOSUCHVARIABLE:-"%i"}"', lambda v: f"<{safe(v)}>"),
            ('"$$(%i)" | tr -d 0-9', lambda v: "<()>"),  # the process ID, but bash parses $( too: left out
        ]
        for shell in SHELLS:
            for template, expected in cases:
                for value in HOSTILE:
                    if "`" in template and "*" in value:
                        continue  # a glob in a command substitution's output
                    self.assertEqual(self.words(template, value, shell), expected(value), (shell, template, value))

    def test_valuesInBackquotesInsideDoubleQuotes(self):
        """In backquotes within "...", the shell's first pass strips the
        backslash of the template's \\" (so the value stands in double
        quotes in the body), of \\$ and of \\\\; under dash and bash alike."""
        cases = [
            ('"`printf %%s \\"%i\\"`"', lambda v: f"<{v.rstrip(chr(10))}>"),
            ('"`printf %%s \\"\'%i\'\\"`"', lambda v: f"<'{v}'>"),
            ('"`printf %%s \\" %i \\" `"', lambda v: f"< {v} >"),
            ('"`printf %%s \\\\"%i\\\\"`"', lambda v: f'<"{v}">'),
            ('"`printf %%s \\"$(printf %%s %i)\\"`"', lambda v: f"<{v.rstrip(chr(10))}>"),
            ('"`printf %%s \\`printf %%s \\\\\\"%i\\\\\\"\\``"', lambda v: "<" + "".join(f'"{v}"'.split()) + ">"),
            ('"x`printf %%s \\"a\\" \'%i\'`"', lambda v: f"<xa{v}>"),
            ("`printf %%s '%i'`", lambda v: "".join(f"<{w}>" for w in v.split()) if v.strip() else "<>"),
        ]
        split = cases[-3:-2] + cases[-1:]  # a command substitution's output split into words
        for shell in SHELLS:
            for template, expected in cases:
                for value in HOSTILE + ['";touch pwned;"', "\\\";touch pwned;\\\"", "\\$(touch pwned)"]:
                    if "*" in value and (template, expected) in split:
                        continue  # a glob in it
                    self.assertEqual(self.words(template, value, shell), expected(value), (shell, template, value))

    def test_dollarBeforeAValue(self):
        """A $ just before a value starts no $'...' (bash), $(...) or
        expansion; within bash's $'...' a value keeps the safe characters."""
        for shell in SHELLS:
            for value in HOSTILE + ["\\'$(touch pwned)\\'", "(touch pwned)", "HOME"]:
                dollar = "" if shell.endswith("bash") else "$"
                self.assertEqual(self.words('$%i"$%i"', value, shell), f"<{dollar}{value}${value}>", (shell, value))
                self.assertEqual(self.words("$'%i'", value, shell), f"<{dollar}{safe(value)}>", (shell, value))

    def test_valueLeftOutWhereTheShellsDiffer(self):
        """\\" in backquotes within "${...}": dash strips the backslash, bash
        keeps it; \\' in $'...': bash escapes the quote, dash ends there; a
        value after either is left out."""
        for template in ('echo "${X:-`echo \\"; %i; \\"`}"', "echo $'a\\'b' %i"):
            command = shellCommand(template, contextFor("touch pwned"))
            self.assertNotIn("pwned", command)

    def test_valuesAfterBashQuotesWithEscapes(self):
        """After a $'...' holding other escapes (awk -F$'\\t', tr -d $'\\r')
        both shells read on alike: a value there is quoted as anywhere."""
        for shell in SHELLS:
            for value in HOSTILE:
                self.assertTrue(self.words("$'\\t\\\\' x%i", value, shell).endswith(f"<x{value}>"), (shell, value))

    def test_integersInArithmetic(self):
        """A whole number in $((...)) is a number there, nested or not."""
        self.assertEqual(self.words("$(((%i) * 2))", "-21"), "<-42>")

    def test_theTemplateStaysShellSyntax(self):
        """Redirections, pipes and the template's own quotes work as written."""
        command = shellCommand("echo %i >> names.txt; echo '%V0010,0010' | tr a-z A-Z >> names.txt",
                               contextFor("x;touch pwned", name="O'Brien^$Ann"))
        subprocess.run(command, shell=True, cwd=self.folder, check=True)
        self.assertEqual(os.listdir(self.folder), ["names.txt"])
        with open(os.path.join(self.folder, "names.txt")) as f:
            self.assertEqual(f.read(), "x;touch pwned\nO'BRIEN^$ANN\n")
