"""query, query2, the finders and the listers on a real Archive, locally
and (through C-FIND) on a second archive in the same reactor."""

import os

import pydicom
from pydicom.uid import generate_uid
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.logger import capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.control import finders
from pacscore.control.client import sendCommand
from pacscore.control.context import CommandError
from pacscore.control.data import AddImageFile
from pacscore.control.protocol import ControlFactory
from pacscore.testing.corpus import generateCorpus, makeDataset
from plugins import pacs_control_database as commands
from tests.pacscore.control.running import RunningArchive


class DatabaseCommandTests(unittest.TestCase):

    @defer.inlineCallbacks
    def setUp(self):
        self.running = RunningArchive(self, ae="LISTED", listen=True)
        self.images = generateCorpus(os.path.abspath(self.mktemp()), patients=3, studiesPerPatient=1,
                                     seriesPerStudy=2, imagesPerSeries=2, namePrefix="Smith")
        yield self.running.store(self.images)

    def command(self, command, arguments):
        return self.running.run(command, arguments)

    @defer.inlineCallbacks
    def test_queryWithAndWithoutFormat(self):
        output = yield self.command(commands.query, "DICOMPatients|PatientID,PatientName||%s is %s")
        self.assertEqual(output.split("\n"), [f"PAT000{n} is Smith^Patient{n}" for n in range(3)])
        output = yield self.command(commands.query, "dicomseries|SeriesPat,count(*)|SeriesPat <> 'PAT0001'"
                                               " GROUP BY SeriesPat ORDER BY SeriesPat|")
        self.assertEqual(output.split("\n"), ["PAT0000\t2", "PAT0002\t2"])

    @defer.inlineCallbacks
    def test_conquestTemplatesTakeTheValuesAgain(self):
        output = yield self.command(commands.query, "DICOMPatients|PatientID,PatientName|PatientID = 'PAT0001'|"
                                    "<A HREF=x&query=PatientID+=+'%s'>%0.0s %s</A><TD>%s|")
        self.assertEqual(output, "<A HREF=x&query=PatientID+=+'PAT0001'> PAT0001</A><TD>Smith^Patient1")
        output = yield self.command(commands.patientFinder, "|patient1|<A HREF=x&query==%s>%0.0s%0.0s%0.0s%s</A>|")
        self.assertEqual(output, "<A HREF=x&query==PAT0001>PAT0001</A>")

    @defer.inlineCallbacks
    def test_query2LimitsRowsAndWritesFiles(self):
        target = os.path.abspath(self.mktemp())
        output = yield self.command(commands.query2, f"DICOMImages|SOPInstanceUID||%s|3|{target}")
        self.assertIn("3 line(s) written to", output)
        with open(target) as f:
            self.assertEqual(len(f.read().splitlines()), 3)
        yield self.assertFailure(self.command(commands.query2, "DICOMImages|SOPInstanceUID|||many|"), CommandError)

    @defer.inlineCallbacks
    def test_query2LimitIsAtMostTheLargestFetch(self):
        output = yield self.command(commands.query2, f"DICOMPatients|PatientID|||{2**31 - 1}|")
        self.assertEqual(len(output.split("\n")), 3)
        for limit in (2**31, 10**20):
            error = yield self.assertFailure(self.command(commands.query2, f"DICOMPatients|PatientID|||{limit}|"),
                                             CommandError)
            self.assertEqual(str(error), f"max must be at most {2**31 - 1}, not {limit}")

    @defer.inlineCallbacks
    def test_queryRefusals(self):
        for arguments in ("sqlite_master|name||", "DICOMPatients|PatientID|1=1; DELETE FROM DICOMPatients|",
                          "DICOMPatients||", "DICOMPatients|NoSuchColumn||"):
            yield self.assertFailure(self.command(commands.query, arguments), CommandError)
        self.assertEqual((yield self.running.count("patient")), 3)

    @defer.inlineCallbacks
    def test_patientfinderMatchesIDOrNameCaseInsensitively(self):
        self.assertEqual((yield self.command(commands.patientFinder, "|patient1|%s|")), "PAT0001")
        self.assertEqual((yield self.command(commands.patientFinder, "LISTED|0002|%s %s|")), "PAT0002 Smith^Patient2")
        listing = yield self.command(commands.patientFinder, "||")
        self.assertEqual(listing.split("\n")[0], "PAT0000\tSmith^Patient0\t19700101\tO")
        self.assertEqual(len(listing.split("\n")), 3)

    @defer.inlineCallbacks
    def test_studyAndSeriesFinders(self):
        image = self.images[4]
        study = yield self.command(commands.studyFinder, "(local)|SMITH^PATIENT1||")
        self.assertEqual(study.split("\t"), ["PAT0001", "Smith^Patient1", "20240102", "CT", "Synthetic study",
                                             image.studyUID])
        series = yield self.command(commands.seriesFinder, "|series 2|%s %0.0s%0.0s%0.0s%s|")
        self.assertEqual(sorted(series.split("\n")), ["PAT0000 Series 2", "PAT0001 Series 2", "PAT0002 Series 2"])

    @defer.inlineCallbacks
    def test_openDateRanges(self):
        """``-yyyymmdd`` lists what is up to that day, ``yyyymmdd-`` what is
        from it (Conquest's PatientStudyFinder takes both), the day itself
        and the days before or after it; they listed nothing (exit 0),
        searched only as text."""
        yield self.running.redate("PAT0000", "20240101")
        early, *late = [image.studyUID for image in self.images[::4]]
        for finder, fmt in ((commands.studyFinder, "%0.0s%0.0s%0.0s%0.0s%0.0s%s"),
                            (commands.seriesFinder, "%0.0s%0.0s%0.0s%0.0s%0.0s%s%0.0s")):
            for text, studies in (("-20240101", [early]), ("-20240102", [early] + late), ("20240101-", [early] + late),
                                  ("20240102-", late), ("-20231231", []), ("20240103-", [])):
                found = yield self.command(finder, f"|{text}|{fmt}|")
                self.assertEqual(sorted(set(found.split("\n")) - {""}), sorted(studies), (finder.name, text))

    @defer.inlineCallbacks
    def test_eightDigitsThatAreNoDayAreSearchedAsText(self):
        """``-12345678``, ``20241399-`` or ``99999999`` are no dates (Conquest
        takes a real day from 1900 to 2199), nor ``0000``, ``1899`` or
        ``9999`` a year (1901 to 2199) or ``000012`` and ``202413`` a month
        (190001 to 219912), nor full-width digits any: on another archive they were
        sent as a StudyDate/SeriesDate key it refuses ('C-FIND on LISTED
        ended with status 0xA900'); they are searched as text only, here as
        there, a patient whose ID holds them found, one of a study in 1899
        or 9999 not."""
        texts = ("-12345678", "20241399-", "99999999", "18991231-", "-22000101", "20240101-22000101", "0000",
                 "000012", "202413", "1899", "9999", "２０２４")
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        patients = [(f"T{text}" if text.isascii() else f"WIDE{n}", f"Wide^{text}", "20240102")
                    for n, text in enumerate(texts)]
        for n, (patientID, name, date) in enumerate(patients + [("OLD", "Old^Study", "18990615"),
                                                                 ("FAR", "Far^Study", "99990615")]):
            dataset = makeDataset(patientID, name, generate_uid(), generate_uid(), generate_uid(), 1, 1,
                                  studyDate=date, charset="ISO_IR 192")
            path = os.path.join(folder, f"{n}.dcm")
            dataset.save_as(path, enforce_file_format=True)
            yield self.command(AddImageFile(), path)
        held = (yield self.command(commands.patientFinder, "||%s|")).split("\n")
        asking = RunningArchive(self, ae="ASKING")
        asking.know(self.running)
        for finder in (commands.studyFinder, commands.seriesFinder):
            for text in texts:
                expected = sorted(p for p in held if text in p) or [f"WIDE{len(texts) - 1}"]
                self.assertEqual(sorted(set((yield self.command(finder, f"|{text}|%s|")).split("\n"))), expected,
                                 (finder.name, text))
                self.assertEqual(sorted(set((yield asking.run(finder, f"LISTED|{text}|%s|")).split("\n"))),
                                 expected, (finder.name, text))

    @defer.inlineCallbacks
    def test_remoteFindersWaitTheTCPIPTimeOutInUse(self):
        """After put_param:TCPIPTimeOut,2 (answered 'takes effect when the
        server restarts') the remote finders gave up on a node after 2 s
        while the server's associations kept the start value."""
        asking = RunningArchive(self, ae="ASKING")
        asking.know(self.running)
        asking.archive.configuration.ini.set("TCPIPTimeOut", "2")  # what put_param does in memory
        timeouts = []

        def associate(*arguments, dimseTimeout, **options):
            timeouts.append(dimseTimeout)
            return realAssociate(*arguments, dimseTimeout=dimseTimeout, **options)
        realAssociate = finders.associate
        self.patch(finders, "associate", associate)
        self.assertEqual((yield asking.run(commands.patientFinder, "LISTED|0002|%s|")), "PAT0002")
        self.assertEqual(timeouts, [asking.archive.idleTimeout])
        self.assertNotEqual(asking.archive.idleTimeout, 2)

    @defer.inlineCallbacks
    def test_findersDrillDownAsConquestsPagesDo(self):
        """``=ID`` matches a patient ID, study or series UID exactly (the
        studyfinder gets ``=PatientID``, the seriesfinder ``=StudyUID`` from
        the finder before), a ``*`` in it as itself; a text that is a UID is
        looked up as one too."""
        image = self.images[4]
        self.assertEqual((yield self.command(commands.patientFinder, "|=PAT0001|%s|")), "PAT0001")
        self.assertEqual((yield self.command(commands.patientFinder, "|=PAT000|%s|")), "")
        self.assertEqual((yield self.command(commands.patientFinder, "|=pat0001|%s|")), "")
        studyUID = "%0.0s%0.0s%0.0s%0.0s%0.0s%s"
        for text in ("=PAT0001", f"={image.studyUID}", image.studyUID):
            self.assertEqual((yield self.command(commands.studyFinder, f"|{text}|{studyUID}|")), image.studyUID)
        series = sorted({i.seriesUID for i in self.images[4:8]})
        for text in (f"={image.studyUID}", image.studyUID):
            found = yield self.command(commands.seriesFinder, f"|{text}|%0.0s%0.0s%0.0s%0.0s%0.0s%0.0s%s|")
            self.assertEqual(sorted(found.split("\n")), series)
        found = yield self.command(commands.seriesFinder,
                                   f"|={image.seriesUID}|%0.0s%0.0s%0.0s%0.0s%0.0s%0.0s%s|")
        self.assertEqual(found, image.seriesUID)
        self.assertEqual((yield self.command(commands.studyFinder, "|=PAT*|%s|")), "")  # a "*" is itself
        yield self.assertFailure(self.command(commands.studyFinder, "|=|%s|"), CommandError)

    @defer.inlineCallbacks
    def test_serieslisterAndImagelister(self):
        image = self.images[4]
        series = yield self.command(commands.seriesLister, f"|{image.patientID}|{image.studyUID}|%s|")
        self.assertEqual(sorted(series.split("\n")), sorted({i.seriesUID for i in self.images[4:8]}))
        files = yield self.command(commands.imageLister, f"|{image.patientID}|{image.seriesUID}||")
        rows = [line.split("\t") for line in files.split("\n")]
        self.assertEqual([row[1] for row in rows], [image.sopUID, self.images[5].sopUID])
        device = self.running.archive.devices[0]
        for name, *_ in rows:
            self.assertTrue(name.startswith("MAG0:"))
            self.assertTrue(os.path.exists(device.absolute(name[len("MAG0:"):])))
        yield self.assertFailure(self.command(commands.imageLister, "|PAT*|1.2|%s|"), CommandError)

    @defer.inlineCallbacks
    def test_imagefinder(self):
        """Conquest's imagefinder (it was 'unknown command'): the images
        whose Patient ID holds the text, or of the series ``=UID``, seven
        values each as its PatientStudyFinder gives the IMAGE level."""
        first, second = self.images[4], self.images[5]
        rows = (yield self.command(commands.imageFinder, f"|{first.patientID}||")).split("\n")
        self.assertEqual(len(rows), 4)
        self.assertIn("\t".join([first.patientID, str(pydicom.dcmread(first.path).PatientName), first.studyUID,
                                 first.seriesUID, first.sopUID]), "\n".join(rows))
        sops = yield self.command(commands.imageFinder, f"local|={first.seriesUID}|%0.0s%0.0s%0.0s%0.0s%s|")
        self.assertEqual(sorted(sops.split("\n")), sorted([first.sopUID, second.sopUID]))
        self.assertEqual((yield self.command(commands.imageFinder, "|NOBODY||")), "")

    @defer.inlineCallbacks
    def test_imagefilelister(self):
        """Conquest's imagefilelister:pat|study|series|sop|file (it was
        'unknown command'): the absolute paths of the files, one a line."""
        first, second = self.images[4], self.images[5]
        paths = (yield self.command(commands.imageLister, f"|{first.patientID}|{first.seriesUID}|%s|")).split("\n")
        listed = yield self.command(commands.imageFileLister, f"{first.patientID}||{first.seriesUID}||")
        self.assertEqual(listed.split("\n"), paths)
        self.assertEqual((yield self.command(commands.imageFileLister, f"|{first.studyUID}|||")).count("\n"), 3)
        one = yield self.command(commands.imageFileLister, f"|||{second.sopUID}|")
        self.assertEqual(one, paths[1])
        yield self.assertFailure(self.command(commands.imageFileLister, "PAT*||||"), CommandError)

    @defer.inlineCallbacks
    def test_imagelisterFormatsAsConquests(self):
        """A format lists the images as Conquest's ImageFileLister: absolute
        file paths (they were ``MAG0:relative``), ``#``/``@`` device and
        name, ``:`` patient ID and SOP UID, ``$`` frames, ``?`` the count,
        with the positions from 0 and 1; a ``*`` at the end joins the rows
        (left out after the last).  Prefixes were printed and ``%d`` refused."""
        first, second = self.images[4], self.images[5]
        listed = f"|{first.patientID}|{first.seriesUID}|"
        paths = (yield self.command(commands.imageLister, listed + "%s|")).split("\n")
        device = self.running.archive.devices[0]
        self.assertEqual([pydicom.dcmread(path).SOPInstanceUID for path in paths], [first.sopUID, second.sopUID])
        self.assertTrue(all(path.startswith(os.path.join(device.path, "")) for path in paths))
        self.assertEqual((yield self.command(commands.imageLister, listed + "%s %s %s|")),
                         f"{paths[0]} 0 1\n{paths[1]} 1 2")
        self.assertEqual((yield self.command(commands.imageLister, listed + "%s*|")), f"{paths[0]}*{paths[1]}")
        names = [os.path.relpath(path, device.path) for path in paths]
        for prefix in "#@":
            self.assertEqual((yield self.command(commands.imageLister, listed + prefix + "%s:%s %s %s|")),
                             f"MAG0:{names[0]} 0 1\nMAG0:{names[1]} 1 2")
        self.assertEqual((yield self.command(commands.imageLister, listed + ":%s:%s,%s*|")),
                         f"{first.patientID}:{first.sopUID},0*{first.patientID}:{second.sopUID},1")
        image = self.running.archive.index.tables.image
        yield self.running.archive.index.runWrite(lambda connection: connection.execute(
            image.update().where(image.c.SOPInstanceUID == first.sopUID).values(NumberOfFrames="3")))
        self.assertEqual((yield self.command(commands.imageLister, listed + "$%d frame(s) |")),
                         "3 frame(s) 0 frame(s) ")
        self.assertEqual((yield self.command(commands.imageLister, listed + "?%d image(s)|")), "2 image(s)")
        written = os.path.abspath(self.mktemp())
        yield self.command(commands.imageLister, listed + "%s|" + written)
        with open(written) as f:
            self.assertEqual(f.read(), f"{paths[0]}\n{paths[1]}\n")

    @defer.inlineCallbacks
    def test_framesAsConquestsAtoiReadsThem(self):
        """``$`` prints a NumberOfFrames as Conquest's atoi reads it, the
        number it starts with: '2.0', '3\\4' or ' 12abc' were 0."""
        first = self.images[4]
        listed = f"|{first.patientID}|{first.seriesUID}|"
        image = self.running.archive.index.tables.image
        for stored, frames in (("2.0", "2"), ("3\\4", "3"), (" 12abc", "12"), ("abc", "0")):
            yield self.running.archive.index.runWrite(lambda connection: connection.execute(
                image.update().where(image.c.SOPInstanceUID == first.sopUID).values(NumberOfFrames=stored)))
            self.assertEqual((yield self.command(commands.imageLister, listed + "$%d,|")), f"{frames},0,", stored)

    @defer.inlineCallbacks
    def controlOutput(self, request):
        """The OUTPUT lines of ``request`` sent to the archive's control
        port, as dgate prints them."""
        listening = reactor.listenTCP(0, ControlFactory(self.running.archive, reactor), interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        output = []
        reply = yield sendCommand(TCP4ClientEndpoint(reactor, "127.0.0.1", listening.getHost().port), request,
                                  output=output.append)
        self.assertTrue(reply.ok, reply)
        return output

    @defer.inlineCallbacks
    def test_formatsThatAreOnlyAPrefix(self):
        """A format that is only its prefix prints what Conquest's does with
        the empty rest, through dgate (the control port) and in a file:
        ``#``, ``@`` and ``:`` an empty line per image, ``$`` nothing, ``?``
        one empty line; they printed pacs's tab-separated values
        ('MAG0\tPAT0001/...dcm\t0\t1'), then one line too few through the
        control port (its last, empty, dropped), ``$`` a newline in a file.
        A bad format is named as it was given, its prefix kept."""
        image = self.images[4]
        listed = f"|{image.patientID}|{image.seriesUID}|"
        for prefix, lines in (("#", ["", ""]), ("@", ["", ""]), (":", ["", ""]), ("$", []), ("?", [""])):
            self.assertEqual((yield self.controlOutput(f"--imagelister:{listed}{prefix}|")), lines, prefix)
            self.assertEqual((yield self.command(commands.imageLister, listed + prefix + "|")), "\n".join(lines))
            written = os.path.abspath(self.mktemp())
            yield self.command(commands.imageLister, f"{listed}{prefix}|{written}")
            with open(written) as f:
                self.assertEqual(f.read(), "".join(line + "\n" for line in lines), prefix)
        self.assertEqual((yield self.controlOutput(f"--serieslister:|{image.patientID}|{image.studyUID}|?|")), [""])
        error = yield self.assertFailure(self.command(commands.imageLister, listed + "#%d|"), CommandError)
        self.assertIn("bad format '#%d'", str(error))

    @defer.inlineCallbacks
    def test_formatsWithALineBreakThroughTheControlPort(self):
        """A format holding a line break gives through dgate the lines a
        file of it holds: ``:%s\n`` an empty line after each image; the
        control port dropped each row's own trailing break (ea424b6)."""
        image = self.images[4]
        listed = f"|{image.patientID}|{image.seriesUID}|"
        written = os.path.abspath(self.mktemp())
        yield self.command(commands.imageLister, f"{listed}:%s\n|{written}")
        with open(written) as f:
            inFile = f.read().split("\n")[:-1]
        self.assertEqual(len(inFile), 4)
        self.assertEqual((yield self.controlOutput(f"--imagelister:{listed}:%s\n|")), inFile)

    @defer.inlineCallbacks
    def test_imagelisterLeavesOutImagesOnNoDevice(self):
        """An image whose DeviceName is no MAG device (one dropped from
        dicom.ini) is left out of the ``%s``, ``#``, ``@``, ``:`` and ``$``
        listings, with a log line, as Conquest's ImageFileLister leaves it
        (its position counted still), and counted by ``?``; the whole
        listing failed: 'no MAG device 'MAG9'', then ``:`` and ``$`` listed it."""
        first = self.images[4]
        listed = f"|{first.patientID}|{first.seriesUID}|"
        names = (yield self.command(commands.imageLister, listed + "#%0.0s%s|")).split("\n")
        image = self.running.archive.index.tables.image
        yield self.running.archive.index.runWrite(lambda connection: connection.execute(
            image.update().where(image.c.SOPInstanceUID == first.sopUID).values(DeviceName="MAG9")))
        with capturedLogs() as events:
            path = yield self.command(commands.imageLister, listed + "%s %s|")
            for prefix in "#@":
                self.assertEqual((yield self.command(commands.imageLister, listed + prefix + "%s:%s %s|")),
                                 f"MAG0:{names[1]} 1")
            self.assertEqual((yield self.command(commands.imageLister, listed + ":%s:%s %s|")),
                             f"{first.patientID}:{self.images[5].sopUID} 1")
            self.assertEqual((yield self.command(commands.imageLister, listed + "$%d,|")), "0,")
            self.assertEqual((yield self.command(commands.imageLister, listed + "?%d|")), "2")
        self.assertEqual(path, os.path.join(self.running.archive.devices[0].path, names[1]) + " 1")
        lines = [formatEvent(event) for event in events]
        self.assertEqual(lines.count(f"imagelister: {first.sopUID} left out: it is on 'MAG9', which is no MAG device"),
                         5, lines)

    @defer.inlineCallbacks
    def test_serieslisterFormatsAsConquests(self):
        """A format lists each series as Conquest's SeriesUIDLister: its UID
        and its position (a number), ``?`` the count; a ``*`` at the end
        joins them; ``%d`` was refused."""
        image = self.images[4]
        listed = f"|{image.patientID}|{image.studyUID}|"
        rows = (yield self.command(commands.seriesLister, listed + "%s %d|")).split("\n")
        self.assertEqual([row.split()[1] for row in rows], ["0", "1"])
        self.assertEqual(sorted(row.split()[0] for row in rows), sorted({i.seriesUID for i in self.images[4:8]}))
        uids = [row.split()[0] for row in rows]
        self.assertEqual((yield self.command(commands.seriesLister, listed + "%s*|")), f"{uids[0]}*{uids[1]}*")
        self.assertEqual((yield self.command(commands.seriesLister, listed + "?%d|")), "2")

    @defer.inlineCallbacks
    def test_imagelisterWithoutASeries(self):
        """An empty series lists every image of the patient, or with no
        patient either every image, as Conquest's scripts use it
        (``--imagelister:local|||%s|files.txt``); it said 'no series UID given'."""
        everything = yield self.command(commands.imageLister, "local|||:%0.0s%s|")
        self.assertEqual(sorted(everything.split("\n")), sorted(image.sopUID for image in self.images))
        files = (yield self.command(commands.imageLister, "local|||%s|")).split("\n")
        self.assertEqual(len(files), len(self.images))
        self.assertTrue(all(os.path.isabs(path) and os.path.exists(path) for path in files))
        patientID = self.images[4].patientID
        ofPatient = yield self.command(commands.imageLister, f"|{patientID}||:%0.0s%s|")
        self.assertEqual(sorted(ofPatient.split("\n")),
                         sorted(image.sopUID for image in self.images if image.patientID == patientID))

    @defer.inlineCallbacks
    def test_listersRefuseWhatIsNoUID(self):
        for command, arguments in ((commands.seriesLister, "(local)|PAT0000|\U0001f600|"),
                                   (commands.imageLister, "|PAT0000|1.2.\u0663|"),
                                   (commands.imageLister, "LISTED||\u60a3\u8005|")):
            error = yield self.assertFailure(self.command(command, arguments), CommandError)
            self.assertIn("is not a UID", str(error))

    @defer.inlineCallbacks
    def test_exactTextOnAnotherArchiveIsNoUIDKey(self):
        """``=text`` on another archive asks for the text as a Study or
        Series Instance UID (VR UI) only when it is a UID: ``=PAT0001`` and
        ``=PAT*`` are asked as patient IDs alone, so neither archive warns
        ``Invalid value for VR UI``, and the answers are those of this
        archive's index."""
        asking = RunningArchive(self, ae="ASKING")
        asking.know(self.running)
        image = self.images[4]
        study = "%0.0s%0.0s%0.0s%0.0s%0.0s%s"
        for text, found in (("=PAT0001", image.studyUID), ("=PAT*", ""), (f"={image.studyUID}", image.studyUID)):
            self.assertEqual((yield asking.run(commands.studyFinder, f"LISTED|{text}|{study}|")), found, text)
        series = yield asking.run(commands.seriesFinder, "LISTED|=PAT0001|%0.0s%0.0s%0.0s%0.0s%0.0s%0.0s%s|")
        self.assertEqual(sorted(series.split("\n")), sorted({i.seriesUID for i in self.images[4:8]}))
        self.assertEqual([w["message"] for w in self.flushWarnings() if "VR UI" in w["message"]], [])

    @defer.inlineCallbacks
    def test_findersOnAnotherArchive(self):
        asking = RunningArchive(self, ae="ASKING")
        asking.know(self.running)
        self.assertEqual((yield asking.run(commands.patientFinder, "LISTED|patient2|%s %s|")), "PAT0002 Smith^Patient2")
        image = self.images[0]
        series = yield asking.run(commands.seriesLister, f"LISTED||{image.studyUID}|%s|")
        self.assertEqual(sorted(series.split("\n")), sorted({i.seriesUID for i in self.images[:4]}))
        sops = yield asking.run(commands.imageLister, f"LISTED|{image.patientID}|{image.seriesUID}|:%0.0s%s|")
        self.assertEqual(sops.split("\n"), [image.sopUID, self.images[1].sopUID])
        self.assertEqual((yield asking.run(commands.imageLister, f"LISTED||{image.seriesUID}|$%d,*|")), "0,*0,")
        self.assertEqual((yield asking.run(commands.imageLister, f"LISTED||{image.seriesUID}|?%d|")), "2")
        error = yield self.assertFailure(asking.run(commands.imageLister, f"LISTED||{image.seriesUID}|%s|"),
                                         CommandError)
        self.assertIn("another archive's images have no files here", str(error))
        yield self.assertFailure(asking.run(commands.patientFinder, "NOWHERE|x||"), CommandError)
        error = yield self.assertFailure(asking.run(commands.seriesLister, "LISTED|PAT0000|\U0001f600|"), CommandError)
        self.assertIn("study UID '\U0001f600' is not a UID", str(error))
