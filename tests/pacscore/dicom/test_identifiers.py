"""Reading C-FIND/C-MOVE identifiers and encoding the matches."""

import random
import warnings

from pydicom.dataset import Dataset
from twisted.trial import unittest

from pacscore.db.query import QueryKey
from pacscore.dicom.datasets import decodeDataset, encodeDataset
from pacscore.dicom.identifiers import (
    IDENTIFIER_DOES_NOT_MATCH, UNABLE_TO_PROCESS, BadIdentifier, MatchEncoder, Request, readRequest,
    responseCharacterSet)
from pacscore.dicom.models import ALL_LEVELS
from pacscore.testing.mutations import mutated

IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
BIG_ENDIAN = "1.2.840.10008.1.2.2"


def identifier(**keys):
    ds = Dataset()
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


class ReadRequestTests(unittest.TestCase):

    def test_keysAsUnicode(self):
        ds = identifier(SpecificCharacterSet="ISO_IR 100", QueryRetrieveLevel="PATIENT",
                        PatientName="Müller*", PatientID="", ModalitiesInStudy=["CT", "MR"],
                        ReferencedStudySequence=[])
        request = readRequest(encodeDataset(ds, IMPLICIT), IMPLICIT, ALL_LEVELS)
        self.assertEqual(request.level, "PATIENT")
        self.assertEqual(request.characterSet, "ISO_IR 100")
        self.assertEqual(request.keys, [QueryKey(0x00080061, "CS", "CT\\MR"),
                                        QueryKey(0x00081110, "SQ", ""),
                                        QueryKey(0x00100010, "PN", "Müller*"),
                                        QueryKey(0x00100020, "LO", "")])

    def test_levelOutsideTheModel(self):
        data = encodeDataset(identifier(QueryRetrieveLevel="PATIENT"), EXPLICIT)
        error = self.assertRaises(BadIdentifier, readRequest, data, EXPLICIT, ("STUDY", "SERIES", "IMAGE"))
        self.assertEqual(error.status, IDENTIFIER_DOES_NOT_MATCH)

    def test_missingOrGarbage(self):
        for data in (None, b"\x08\x00\x52\x00\xff\xff\xff\x7f"):
            error = self.assertRaises(BadIdentifier, readRequest, data, IMPLICIT, ALL_LEVELS)
            self.assertEqual(error.status, UNABLE_TO_PROCESS)

    def test_mutatedIdentifiers(self):
        """Seeded random damage to identifiers in three encodings: a
        request, or BadIdentifier (a C-FIND/C-MOVE failure status)."""
        rng = random.Random(20261202)
        ds = identifier(SpecificCharacterSet="ISO_IR 100", QueryRetrieveLevel="STUDY", PatientName="Müller*",
                        PatientID="", StudyDate="20260101-20261231", ModalitiesInStudy=["CT", "MR"],
                        StudyInstanceUID="", ReferencedStudySequence=[identifier(ReferencedSOPInstanceUID="")])
        sources = [(encodeDataset(ds, syntax), syntax) for syntax in (IMPLICIT, EXPLICIT, BIG_ENDIAN)]
        refused = 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(2000):
                data, syntax = rng.choice(sources)
                try:
                    readRequest(mutated(rng, data), syntax, ALL_LEVELS)
                except BadIdentifier:
                    refused += 1
        self.assertGreater(refused, 1000)


class MatchEncoderTests(unittest.TestCase):

    def encode(self, keys, values, level="STUDY", characterSet=""):
        encoder = MatchEncoder(Request(level, keys, characterSet), "PACS", EXPLICIT)
        return decodeDataset(encoder.encode(values), EXPLICIT)

    def test_requestedKeysAndTheUniqueKey(self):
        match = self.encode([QueryKey(0x00080020, "DA", "2024*"), QueryKey(0x00201208, "IS", ""),
                             QueryKey(0x00081110, "SQ", ""), QueryKey(0x00280010, "US", "")],
                            {0x00080020: "20240102", 0x00201208: "12", 0x0020000D: "1.2.3", 0x00280010: "512"})
        self.assertEqual({e.keyword for e in match},
                         {"StudyDate", "NumberOfStudyRelatedInstances", "ReferencedStudySequence", "Rows",
                          "StudyInstanceUID", "SpecificCharacterSet", "QueryRetrieveLevel", "RetrieveAETitle"})
        self.assertEqual((match.StudyDate, match.NumberOfStudyRelatedInstances, match.Rows, match.StudyInstanceUID),
                         ("20240102", 12, 512, "1.2.3"))
        self.assertEqual((match.QueryRetrieveLevel, match.RetrieveAETitle), ("STUDY", "PACS"))

    def test_missingValuesAreEmpty(self):
        match = self.encode([QueryKey(0x00100010, "PN", "")], {0x0020000D: "1.2.3"})
        self.assertEqual(match.PatientName, "")

    def test_characterSets(self):
        for requested, name, expected in (("", "Doe^John", "ISO_IR 100"),
                                          ("", "Müller^Jürgen", "ISO_IR 100"),
                                          ("", "山田^太郎", "ISO_IR 192"),
                                          ("ISO_IR 192", "Müller^Jürgen", "ISO_IR 192"),
                                          ("ISO_IR 100", "山田^太郎", "ISO_IR 192")):
            match = self.encode([QueryKey(0x00100010, "PN", "")], {0x00100010: name}, "PATIENT", requested)
            self.assertEqual((str(match.PatientName), match.SpecificCharacterSet), (name, expected))

    def test_responseCharacterSet(self):
        self.assertEqual(responseCharacterSet("ISO_IR 144", ["Иванов"]), "ISO_IR 144")
        self.assertEqual(responseCharacterSet("ISO_IR 6", ["Ærø"]), "ISO_IR 100")
