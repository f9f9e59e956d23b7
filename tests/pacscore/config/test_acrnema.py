"""Tests for pacscore.config.acrnema: the AE -> host/port map."""

import os

from twisted.logger import capturedLogs
from twisted.trial import unittest

from pacscore.config.acrnema import AcrNemaMap, Node
from pacscore.config.errors import ConfigError

# The acrnema.map of Conquest's manual, section 7.4.
MANUAL_MAP = """\
/* *****
*
* DICOM AE (Application entity) -> IP address / Port map
* (This is file ACRNEMA.MAP)
*
* The syntax for each entry is :
*   AE   <IP adress|Host name>   port number   compression
*
***** */
CONQUESTSRV1      127.0.0.1      5678      un
V*                *                1234      un
S*                *                5678      un
"""


class ReadTests(unittest.TestCase):
    """Parsing the file."""

    def test_manualMap(self):
        amap = AcrNemaMap.fromString(MANUAL_MAP)
        self.assertEqual(amap.nodes, [Node("CONQUESTSRV1", "127.0.0.1", "5678", "un"),
                                      Node("V*", "*", "1234", "un"),
                                      Node("S*", "*", "5678", "un")])

    def test_compressionDefaultsToUn(self):
        amap = AcrNemaMap.fromString("PACS\tpacs.example.org\t104\nVIEWER 10.0.0.2 11112 j2\n")
        self.assertEqual(amap.nodes, [Node("PACS", "pacs.example.org", "104", "un"),
                                      Node("VIEWER", "10.0.0.2", "11112", "j2")])

    def test_comments(self):
        amap = AcrNemaMap.fromString(
            "# a comment line\n"
            "// another one\n"
            "A 1.1.1.1 104 # trailing comment\n"
            "/* several\n"
            "   lines B 2.2.2.2 104 */ C 3.3.3.3 105\n"
            "D /* inline */ 4.4.4.4 106 j1\n")
        self.assertEqual([n.ae for n in amap.nodes], ["A", "C", "D"])
        self.assertEqual(amap.nodes[2], Node("D", "4.4.4.4", "106", "j1"))

    def test_anIPv6HostInBracketsIsReadWithout(self):
        """``[::1]``, as a URL writes an IPv6 address, is the host ``::1``
        (the one connecting takes), from the file as from ``put``."""
        amap = AcrNemaMap.fromString("BRACKETED [::1] 21610 un\nZONE [fe80::1%eth0] 104\n")
        self.assertEqual(amap.nodes, [Node("BRACKETED", "::1", "21610"), Node("ZONE", "fe80::1%eth0", "104")])
        self.assertEqual(amap.lookup("bracketed").host, "::1")
        amap.put(2, Node("BRACKET2", "[fd00::2]", "21610"))
        self.assertEqual(AcrNemaMap.fromString(amap.toString()).nodes[2], Node("BRACKET2", "fd00::2", "21610"))

    def test_fromFile(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(MANUAL_MAP)
        amap = AcrNemaMap.fromFile(path)
        self.assertEqual(amap.path, path)
        self.assertEqual(len(amap.nodes), 3)


class LookupTests(unittest.TestCase):
    """``lookup`` with Conquest's wildcard rule."""

    def setUp(self):
        self.amap = AcrNemaMap.fromString(MANUAL_MAP)

    def test_exact(self):
        self.assertEqual(self.amap.lookup("CONQUESTSRV1"), Node("CONQUESTSRV1", "127.0.0.1", "5678", "un"))

    def test_exactCaseSensitiveFirstThenNot(self):
        """An exact entry of another case is found, and its own spelling
        is called; of entries differing only in case, the one spelled as
        the called AE wins."""
        self.assertEqual(self.amap.lookup("conquestsrv1"), Node("CONQUESTSRV1", "127.0.0.1", "5678", "un"))
        amap = AcrNemaMap.fromString("Viewer 10.0.0.1 104 un\nVIEWER 10.0.0.2 104 un\n")
        self.assertEqual(amap.lookup("VIEWER").host, "10.0.0.2")
        self.assertEqual(amap.lookup("viewer").host, "10.0.0.1")

    def test_paddingIsIgnored(self):
        self.assertEqual(self.amap.lookup("CONQUESTSRV1    ").host, "127.0.0.1")

    def test_unknown(self):
        self.assertIsNone(self.amap.lookup("OTHER"))
        self.assertIsNone(self.amap.lookup("   "))

    def test_wildcardCopiesRestOfAEIntoHost(self):
        # The manual's example: "V" followed by its IP number, port 1234.
        self.assertEqual(self.amap.lookup("V192.168.1.5"), Node("V192.168.1.5", "192.168.1.5", "1234", "un"))
        self.assertEqual(self.amap.lookup("Sworkstation7"), Node("Sworkstation7", "workstation7", "5678", "un"))

    def test_wildcardHostAndPortPrefixes(self):
        # The example in Conquest's amap.cpp: s=NG12, t=NG*, IP=101.11.11.*, Port=56*
        amap = AcrNemaMap.fromString("NG*  101.11.11.*  56*  j2\n")
        self.assertEqual(amap.lookup("NG12"), Node("NG12", "101.11.11.12", "5612", "j2"))

    def test_wildcardPrefixIsCaseInsensitiveAsInConquest(self):
        self.assertEqual(self.amap.lookup("v10.0.0.1").host, "10.0.0.1")

    def test_firstMatchInFileOrderWins(self):
        amap = AcrNemaMap.fromString("V*  *  1234\nVIEWER  10.0.0.9  104\n*  gateway  104 j1\n")
        self.assertEqual(amap.lookup("VIEWER"), Node("VIEWER", "IEWER", "1234", "un"))
        self.assertEqual(amap.lookup("ANY"), Node("ANY", "gateway", "104", "j1"))

    def test_anEarlierExactEntryOfAnotherCaseBeatsALaterWildcard(self):
        """``forward to varscp`` reaches the VARSCP line above ``V*``, not
        host ``arscp``: exact names and wildcard prefixes are compared by
        the same rule, in file order."""
        amap = AcrNemaMap.fromString("VARSCP  127.0.0.1  11113\nV*  *  1234\n")
        self.assertEqual(amap.lookup("varscp"), Node("VARSCP", "127.0.0.1", "11113", "un"))
        self.assertEqual(amap.lookup("vother"), Node("vother", "other", "1234", "un"))

    def test_lookupDoesNotChangeTheMap(self):
        self.amap.lookup("V192.168.1.5")
        self.assertEqual(self.amap.nodes[1], Node("V*", "*", "1234", "un"))


class TLSNodesTests(unittest.TestCase):
    """The ``[DICOMTLSNodes]`` keys (``tlsNodes``) match the AE ``lookup``
    finds by the map's own rule, so that a node the admin declared
    TLS-only is never called in plain TCP."""

    def setUp(self):
        self.amap = AcrNemaMap.fromString("SECUREPACS  10.0.0.1  104\nSECURE*  127.0.0.1  21112\n"
                                          "V*  *  1234\n*  gateway  104\n")
        self.pacs, self.secure = object(), object()

    def test_aKeyEndingInAStarMatchesAsAMapEntryDoes(self):
        self.amap.tlsNodes = {"SECURE*": self.secure}
        self.assertIs(self.amap.lookup("SECURE1").tls, self.secure)
        self.assertIs(self.amap.lookup("secure7").tls, self.secure)
        self.assertIs(self.amap.lookup("SECUREPACS").tls, self.secure)
        self.assertIsNone(self.amap.lookup("OTHER").tls)

    def test_theFirstMatchingKeyWins(self):
        self.amap.tlsNodes = {"SECUREPACS": self.pacs, "SECURE*": self.secure}
        self.assertIs(self.amap.lookup("securepacs").tls, self.pacs)
        self.assertIs(self.amap.lookup("SECURE2").tls, self.secure)

    def test_tlsKeyProblem(self):
        """A key is as meant when an entry is it or lies within it; one
        only wider wildcard entries match is likely a typo, one no entry
        matches is never used."""
        amap = AcrNemaMap.fromString("SECUREPACS  10.0.0.1  104\nSECURE7*  *  104\nV*  *  1234\nS*  *  5678\n",
                                     "/srv/acrnema.map")
        for key in ("SECUREPACS", "securepacs", "SECURE*", "SECUREPACS*", "SECURE7*", "*", "v*"):
            self.assertIsNone(amap.tlsKeyProblem(key), key)
        self.assertEqual(amap.tlsKeyProblem("SECUREPAC"),
                         "/srv/acrnema.map has no entry SECUREPAC, only the wildcard entry S*: check the spelling")
        self.assertEqual(amap.tlsKeyProblem("SECURE71"), "/srv/acrnema.map has no entry SECURE71, only the "
                                                         "wildcard entries SECURE7*, S*: check the spelling")
        self.assertEqual(amap.tlsKeyProblem("VX*"), "/srv/acrnema.map has no entry that VX* matches, only the "
                                                    "wildcard entry V*: check the spelling")
        self.assertEqual(amap.tlsKeyProblem("W1"), "/srv/acrnema.map has no entry W1, nor a wildcard entry "
                                                   "matching it: the line is never used")
        self.assertEqual(amap.tlsKeyProblem("W*"), "/srv/acrnema.map has no entry that W* matches, nor a wildcard "
                                                   "entry matching it: the line is never used")


class MoreWordsTests(unittest.TestCase):
    """Conquest reads the first four words of a line (``sscanf("%s %s %s
    %s")``): a note after the compression code is ignored, with a warning."""

    def test_wordsAfterTheCompressionIgnored(self):
        text = "/* x */\nPACS3 10.0.0.6 104 un Cardiology viewer\n"
        with capturedLogs() as events:
            amap = AcrNemaMap.fromString(text, "etc/acrnema.map")
        self.assertEqual(amap.nodes, [Node("PACS3", "10.0.0.6", "104", "un")])
        self.assertEqual(amap.toString(), text, "written back as it was")
        self.assertEqual([(e["line"], e["extra"]) for e in events], [(2, "Cardiology viewer")])


class ErrorTests(unittest.TestCase):
    """Syntax errors name the file and the line."""

    def assertError(self, text, line, fragment):
        error = self.assertRaises(ConfigError, AcrNemaMap.fromString, text, "etc/acrnema.map")
        self.assertIn(f"etc/acrnema.map:{line}:", str(error))
        self.assertIn(fragment, str(error))

    def test_tooFewFields(self):
        self.assertError(MANUAL_MAP + "PACS 10.0.0.1\n", 13, "PACS 10.0.0.1")

    def test_badPort(self):
        self.assertError("PACS 10.0.0.1 1o4 un\n", 1, "'1o4'")

    def test_aHostInBracketsThatIsNoIPAddress(self):
        self.assertError("PACS [pacs.example.org] 104\n", 1, "host '[pacs.example.org]' of PACS is in brackets but "
                                                          "no IP address")
        self.assertError("PACS [::1 104\n", 1, "host '[::1' of PACS")

    def test_unclosedComment(self):
        self.assertError("A 1.1.1.1 104\n\n/* header\n* more\n", 3, "never closed")


class WriteTests(unittest.TestCase):
    """Live edits: put, delete, write."""

    def setUp(self):
        self.amap = AcrNemaMap.fromString(MANUAL_MAP)

    def test_untouchedFileIsUnchanged(self):
        self.assertEqual(self.amap.toString(), MANUAL_MAP)

    def test_putReplaces(self):
        self.amap.put(1, Node("VIEWER", "10.0.0.2", "11112", "j2"))
        self.assertEqual(self.amap.nodes[1], Node("VIEWER", "10.0.0.2", "11112", "j2"))
        self.assertEqual(len(self.amap.nodes), 3)
        self.assertTrue(self.amap.toString().startswith(MANUAL_MAP.split("CONQUESTSRV1      ")[0]))

    def test_putAppends(self):
        self.amap.put(3, Node("NEW", "10.0.0.3", "104"))
        self.assertEqual(self.amap.nodes[3], Node("NEW", "10.0.0.3", "104", "un"))
        self.assertTrue(self.amap.toString().endswith("NEW               10.0.0.3         104       un\n"))

    def test_putAppendsAfterLastEntry(self):
        amap = AcrNemaMap.fromString("A 1.1.1.1 104\n/* trailer */\n")
        amap.put(1, Node("B", "2.2.2.2", "105"))
        self.assertEqual(amap.toString().splitlines()[-1], "/* trailer */")

    def test_putIntoEmptyMap(self):
        amap = AcrNemaMap.fromString("/* header only */\n")
        amap.put(0, Node("A", "1.1.1.1", "104"))
        self.assertEqual(AcrNemaMap.fromString(amap.toString()).nodes, [Node("A", "1.1.1.1", "104")])

    def test_putOutOfRange(self):
        self.assertRaises(IndexError, self.amap.put, 4, Node("X", "h", "1"))
        self.assertRaises(IndexError, self.amap.put, -1, Node("X", "h", "1"))

    def test_putRefusesWhatTheFileCannotHold(self):
        self.assertRaises(ValueError, self.amap.put, 0, Node("MY AE", "h", "104"))
        self.assertRaises(ValueError, self.amap.put, 0, Node("AE", "", "104"))
        self.assertRaises(ValueError, self.amap.put, 0, Node("AE", "h", "port"))
        self.assertEqual(self.amap.toString(), MANUAL_MAP)

    def test_putRefusesAHostInBracketsThatIsNoIPAddress(self):
        error = self.assertRaises(ValueError, self.amap.put, 3, Node("AE", "[pacs]", "104"))
        self.assertIn("host '[pacs]' of AE is in brackets but no IP address", str(error))
        self.assertEqual(self.amap.toString(), MANUAL_MAP)

    def test_putRefusesCommentMarkers(self):
        for node in (Node("AE#1", "127.0.0.1", "104"), Node("AE3//x", "h", "104"), Node("AE4", "h#", "104"),
                     Node("AE2", "host/*x", "104"), Node("AE5", "*/", "104"), Node("AE6", "h", "104", "u#n")):
            self.assertRaises(ValueError, self.amap.put, 3, node)
        self.assertEqual(self.amap.toString(), MANUAL_MAP)
        self.amap.put(3, Node("AE/1", "host.example", "10*", "j2"))
        self.assertEqual(AcrNemaMap.fromString(self.amap.toString()).nodes, self.amap.nodes)

    def test_delete(self):
        self.amap.delete(0)
        self.assertEqual([n.ae for n in self.amap.nodes], ["V*", "S*"])
        self.assertNotIn("CONQUESTSRV1      127.0.0.1", self.amap.toString())
        self.assertIn("(This is file ACRNEMA.MAP)", self.amap.toString())
        self.assertRaises(IndexError, self.amap.delete, 2)

    def test_editsKeepCommentsSharingTheLine(self):
        text = "/* head\n end */ A 1.1.1.1 104 /* open\nstill open */ B 2.2.2.2 105 # main\nC 3.3.3.3 106\n"
        amap = AcrNemaMap.fromString(text)
        amap.put(0, Node("X", "9.9.9.9", "109"))
        amap.put(1, Node("Y", "8.8.8.8", "108"))
        self.assertEqual(AcrNemaMap.fromString(amap.toString()).nodes,
                         [Node("X", "9.9.9.9", "109"), Node("Y", "8.8.8.8", "108"), Node("C", "3.3.3.3", "106")])
        self.assertIn("# main", amap.toString())
        amap.delete(0)
        amap.delete(0)
        self.assertEqual(AcrNemaMap.fromString(amap.toString()).nodes, [Node("C", "3.3.3.3", "106")])
        self.assertEqual(amap.toString(), "/* head\n end */ /* open\nstill open */ # main\nC 3.3.3.3 106\n")

    def test_writeAndReadBack(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(MANUAL_MAP)
        amap = AcrNemaMap.fromFile(path)
        amap.put(0, Node("CONQUESTSRV1", "192.168.0.10", "5678", "j2"))
        amap.put(3, Node("MODALITY", "10.1.1.1", "104"))
        amap.write()
        again = AcrNemaMap.fromFile(path)
        self.assertEqual(again.lookup("CONQUESTSRV1"), Node("CONQUESTSRV1", "192.168.0.10", "5678", "j2"))
        self.assertEqual(again.lookup("MODALITY").port, "104")
        with open(path) as f:
            self.assertTrue(f.read().startswith("/* *****\n*\n* DICOM AE (Application entity)"))
        self.assertEqual(os.listdir(os.path.dirname(path)), [os.path.basename(path)])
