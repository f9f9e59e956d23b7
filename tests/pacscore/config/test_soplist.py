"""Tests for pacscore.config.soplist: dgatesop.lst."""

import dataclasses
import os

from pydicom._uid_dict import UID_dictionary
from twisted.trial import unittest

from pacscore.config.defaults import defaultConfigDir
from pacscore.config.errors import ConfigError
from pacscore.config.soplist import SopEntry, SopList
from pacscore.dicom.sopclasses import isStorageClass

WAVEFORMS = ("1.2.840.10008.5.1.4.1.1.9.1.1", "1.2.840.10008.5.1.4.1.1.9.1.2", "1.2.840.10008.5.1.4.1.1.9.1.3",
             "1.2.840.10008.5.1.4.1.1.9.2.1", "1.2.840.10008.5.1.4.1.1.9.3.1", "1.2.840.10008.5.1.4.1.1.9.4.1")
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"

# An excerpt of the dgatesop.lst of Conquest's manual, section 7.5.
MANUAL_LIST = """\
#
# DICOM Application / sop / transfer UID list.
#
# This list is used by the CheckedPDU_Service ( "filename" ) service
# class. All incoming associations will be verified against this
# file.
#
# Revision 2: disabled GEMRStorage and GECTStorage
# Revision 3: extended with new sops and with JPEG transfer syntaxes
# Revision 4: added Modality Worklist query
#
#None          none          RemoteAE
#None          none          LocalAE
#DICOM         1.2.840.10008.3.1.1.1  application
Verification   1.2.840.10008.1.1          sop
CTStorage      1.2.840.10008.5.1.4.1.1.2    sop
MRStorage      1.2.840.10008.5.1.4.1.1.4    sop
#WFStorageTwelveLeadECG 1.2.840.10008.5.1.4.1.1.9.1.1 sop
#GEMRStorage\t1.2.840.113619.4.2\tsop
FindModalityWorkList\t1.2.840.10008.5.1.4.31\tsop
LittleEndianImplicit\t1.2.840.10008.1.2\ttransfer
#LittleEndianExplicit\t1.2.840.10008.1.2.1\ttransfer
JPEGBaseLine1\t1.2.840.10008.1.2.4.50\ttransfer LittleEndianExplicit
#JPEGLS_Lossless\t1.2.840.10008.1.2.4.80\ttransfer\tLittleEndianExplicit
"""


class ReadTests(unittest.TestCase):
    """Parsing the file."""

    def setUp(self):
        self.sops = SopList.fromString(MANUAL_LIST)

    def test_enabledSops(self):
        self.assertEqual([e.name for e in self.sops.sops()],
                         ["Verification", "CTStorage", "MRStorage", "FindModalityWorkList"])
        self.assertEqual(self.sops.sops()[1], SopEntry("CTStorage", "1.2.840.10008.5.1.4.1.1.2", "sop"))

    def test_enabledTransfers(self):
        self.assertEqual([e.uid for e in self.sops.transfers()],
                         ["1.2.840.10008.1.2", "1.2.840.10008.1.2.4.50"])
        self.assertEqual(self.sops.transfers()[1].extra, "LittleEndianExplicit")
        self.assertIsNone(self.sops.transfers()[0].extra)

    def test_disabledEntriesAreKept(self):
        disabled = [e for e in self.sops.entries if not e.enabled]
        self.assertEqual([e.name for e in disabled],
                         ["None", "None", "DICOM", "WFStorageTwelveLeadECG", "GEMRStorage",
                          "LittleEndianExplicit", "JPEGLS_Lossless"])
        self.assertEqual(disabled[4], SopEntry("GEMRStorage", "1.2.840.113619.4.2", "sop", enabled=False))
        self.assertEqual(disabled[2].kind, "application")

    def test_commentsAreNotEntries(self):
        self.assertEqual(len(self.sops.entries), 13)

    def test_disabledKindsAreEmpty(self):
        self.assertEqual(self.sops.applications(), [])
        self.assertEqual(self.sops.remoteAEs(), [])
        self.assertEqual(self.sops.localAEs(), [])

    def test_aeTitleIsTheSecondColumn(self):
        # Conquest's CheckedPDU_Service compares the second column with the AE.
        sops = SopList.fromString("Scanner  CT_SCANNER  RemoteAE\nMe  CONQUESTSRV1  localae\n"
                                  "#None none RemoteAE\nCTStorage 1.2.840.10008.5.1.4.1.1.2 sop\n")
        self.assertEqual([e.aeTitle for e in sops.remoteAEs()], ["CT_SCANNER"])
        self.assertEqual([e.aeTitle for e in sops.localAEs()], ["CONQUESTSRV1"])
        self.assertEqual(sops.remoteAEs()[0].name, "Scanner")
        self.assertEqual(sops.entries[2].aeTitle, "none")
        self.assertFalse(sops.entries[2].enabled)
        self.assertIsNone(sops.entries[3].aeTitle)

    def test_kindIsCaseInsensitive(self):
        sops = SopList.fromString("DICOM 1.2.840.10008.3.1.1.1 Application\nCT 1.2.3 SOP\nMR 1.2.4 abstract\n")
        self.assertEqual([e.kind for e in sops.entries], ["application", "sop", "abstract"])
        self.assertEqual(len(sops.applications()), 1)
        self.assertEqual([e.name for e in sops.sops()], ["CT", "MR"])

    def test_fromFile(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(MANUAL_LIST)
        self.assertEqual(len(SopList.fromFile(path).sops()), 4)


class ShippedListTests(unittest.TestCase):
    """The dgatesop.lst pacs ships (etc/)."""

    def setUp(self):
        self.sops = SopList.fromFile(os.path.join(defaultConfigDir(), "dgatesop.lst"))
        self.enabled = {entry.uid for entry in self.sops.sops()}

    def test_waveformsEnabled(self):
        """12-lead, general and ambulatory ECG, hemodynamic, cardiac EP and
        basic voice audio, which Conquest's list leaves disabled and Orthanc
        stores."""
        for uid in WAVEFORMS:
            self.assertIn(uid, self.enabled)

    def test_everyCurrentStorageClass(self):
        """Every storage SOP class of the current standard (pydicom's UID
        registry): Encapsulated OBJ and MTL, volumetric presentation
        states, photoacoustic, dermoscopic, the second-generation RT
        classes ...; but the Media Storage Directory (DICOMDIR, no C-STORE)."""
        current = {uid for uid, (name, kind, _, retired, _) in UID_dictionary.items()
                   if kind == "SOP Class" and not retired and isStorageClass(uid)} - {MEDIA_STORAGE_DIRECTORY}
        self.assertEqual(sorted(current - self.enabled), [])
        self.assertNotIn(MEDIA_STORAGE_DIRECTORY, self.enabled)


class ErrorTests(unittest.TestCase):
    """Syntax errors name the file and the line."""

    def assertError(self, text, line, fragment):
        error = self.assertRaises(ConfigError, SopList.fromString, text, "etc/dgatesop.lst")
        self.assertIn(f"etc/dgatesop.lst:{line}:", str(error))
        self.assertIn(fragment, str(error))

    def test_tooFewFields(self):
        self.assertError("# list\nCTStorage 1.2.840.10008.5.1.4.1.1.2\n", 2, "CTStorage")

    def test_unknownKind(self):
        self.assertError("CT 1.2.3 sop\n\nMR 1.2.4 spo\n", 3, "'spo'")

    def test_malformedUid(self):
        self.assertError("CT 1.2.840.10008.5.1.4.1.1.x sop\n", 1, "malformed UID")
        self.assertError("TS 1.2..840 transfer\n", 1, "malformed UID")
        self.assertError("APP " + "1." * 40 + "1 application\n", 1, "malformed UID")

    def test_malformedCommentedEntryIsAComment(self):
        sops = SopList.fromString("#CT 1.2.x sop\n# just two\n")
        self.assertEqual(sops.entries, [])


class WriteTests(unittest.TestCase):
    """Live edits: put, delete, write."""

    def setUp(self):
        self.sops = SopList.fromString(MANUAL_LIST)

    def test_untouchedFileIsUnchanged(self):
        self.assertEqual(self.sops.toString(), MANUAL_LIST)

    def test_enableDisabledEntry(self):
        index = [e.name for e in self.sops.entries].index("LittleEndianExplicit")
        self.sops.put(index, dataclasses.replace(self.sops.entries[index], enabled=True))
        again = SopList.fromString(self.sops.toString())
        self.assertIn("1.2.840.10008.1.2.1", [e.uid for e in again.transfers()])
        self.assertEqual(len(again.entries), 13)

    def test_disableEntry(self):
        entry = self.sops.entries[3]
        self.assertEqual(entry.name, "Verification")
        self.sops.put(3, dataclasses.replace(entry, enabled=False))
        self.assertIn("\n#Verification ", self.sops.toString())
        self.assertNotIn("Verification", [e.name for e in SopList.fromString(self.sops.toString()).sops()])

    def test_appendAndDelete(self):
        self.sops.put(13, SopEntry("Modality", "CT01", "remoteae"))
        self.sops.delete(0)
        again = SopList.fromString(self.sops.toString())
        self.assertEqual(again.entries[-1], SopEntry("Modality", "CT01", "remoteae"))
        self.assertIn(" RemoteAE", self.sops.toString().splitlines()[-1])
        self.assertEqual(again.entries[0].kind, "localae")
        self.assertRaises(IndexError, self.sops.delete, 13)
        self.assertRaises(IndexError, self.sops.put, 14, SopEntry("X", "1.2", "sop"))
        self.assertRaises(ValueError, self.sops.put, 0, SopEntry("X", "1.2", "SOP"))
        self.assertRaises(ValueError, self.sops.put, 0, SopEntry("X", "1.2.x", "sop"))
        self.assertRaises(ValueError, self.sops.put, 0, SopEntry("Two words", "1.2", "sop"))

    def test_writeAndReadBack(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(MANUAL_LIST)
        sops = SopList.fromFile(path)
        sops.put(len(sops.entries), SopEntry("EnhancedCTImageStorage", "1.2.840.10008.5.1.4.1.1.2.1", "sop"))
        sops.write()
        again = SopList.fromFile(path)
        self.assertEqual(again.sops()[-1].uid, "1.2.840.10008.5.1.4.1.1.2.1")
        with open(path) as f:
            self.assertTrue(f.read().startswith("#\n# DICOM Application / sop / transfer UID list.\n"))
        self.assertEqual(os.listdir(os.path.dirname(path)), [os.path.basename(path)])
