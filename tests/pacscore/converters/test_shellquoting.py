"""Tests for pacscore.converters.shellquoting: a %-variable's value reaches
the program as data wherever it stands in the template, never as shell
syntax; the template's own text stays shell syntax."""

import os
import re
import subprocess

from pydicom import Dataset
from twisted.trial import unittest

from pacscore.converters.context import ConverterContext
from pacscore.converters.shellquoting import shellCommand

HOSTILE = ["x;touch pwned", "$(touch pwned)", "`touch pwned`", "a'b", 'a"b', "a\\", "a b  c", "$HOME",
           "x\ntouch pwned #", "'$(touch pwned)'", '"; touch pwned; "', "*", ""]



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

    def words(self, template, patientID, **values):
        """The arguments ``printf`` gets from ``template`` for this patient,
        run by the shell; no file 'pwned' may appear."""
        command = shellCommand(f"printf '<%%s>' {template}", contextFor(patientID, **values))
        result = subprocess.run(command, shell=True, cwd=self.folder, capture_output=True, text=True)
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
        ]
        for template, expected in cases:
            for value in HOSTILE:
                if "`" in template and "*" in value:
                    continue  # a glob in a command substitution's output
                self.assertEqual(self.words(template, value), expected(value), (template, value))

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
