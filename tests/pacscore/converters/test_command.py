"""Tests for pacscore.converters.command: the file names converter commands
take (``filePath``)."""

import os

from twisted.trial import unittest

from pacscore.converters.command import filePath
from tests.pacscore.converters.lines import context


class FilePathTests(unittest.TestCase):

    def path(self, template, patientID, workdir="/work", filename="/data/MAG0/P 1/1.2.3.dcm"):
        lineContext = context("export", workdir=workdir)
        lineContext.dataset.PatientID = patientID
        lineContext.dataset.PatientName = "Doe^John"
        lineContext.filename = filename
        return filePath(lineContext, template)

    def test_valuesCannotLeadOut(self):
        """(template, Patient ID, path): a value is one file name part,
        without separators and not starting with "." (as FileNameSyntax
        makes values), wherever it stands."""
        cases = [
            ("export/%i.dcm", "../../../../tmp/x", "/work/export/_._.._.._.._tmp_x.dcm"),
            ("notes/%i.txt", "/etc/passwd", "/work/notes/_etc_passwd.txt"),
            ("%i/%i.dcm", "..", "/work/_./_..dcm"),
            ("%i%i/x.dcm", ".", "/work/__/x.dcm"),
            ("x/%i", "a\\..\\..\\b", "/work/x/a_.._.._b"),
            ("%i/x.dcm", "", "/work/x.dcm"),
            ("x/%i%n.txt", "\x01", "/work/x/_\n.txt"),
        ]
        for template, patientID, path in cases:
            self.assertEqual(self.path(template, patientID), path, (template, patientID))

    def test_whatConquestUsersWrite(self):
        """The template's own folders and absolute paths, UIDs with their
        dots, names with spaces and the stored file's own path (%f, %p)
        stay as they are."""
        cases = [
            ("export/%i.dcm", "PAT 1", "/work/export/PAT 1.dcm"),
            ("/export/%i/%V0010,0010.dcm", "P1", "/export/P1/Doe^John.dcm"),
            ("../outside/%i.dcm", "P1", os.path.normpath("/work/../outside/P1.dcm")),
            ("out/%i.v1.2.3.dcm", "1.2.840.1", "/work/out/1.2.840.1.v1.2.3.dcm"),
            ("%f", "P1", "/data/MAG0/P 1/1.2.3.dcm"),
            ("%p/copy_%b.dcm", "P1", "/data/MAG0/P 1/copy_1.2.3.dcm"),
        ]
        for template, patientID, path in cases:
            self.assertEqual(os.path.normpath(self.path(template, patientID)), path, template)
