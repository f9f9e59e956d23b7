"""A real Archive in a temporary working folder, started on the global
reactor as ``twistd pacs`` starts it (``loadConfiguration`` + ``Archive``),
for running control commands with a ``ControlContext``; optionally
listening for DICOM on a free loopback port."""

import os

from sqlalchemy import func, select
from twisted.internet import defer, reactor

from pacscore.archive import Archive
from pacscore.config.acrnema import Node
from pacscore.config.loader import loadConfiguration
from pacscore.control.context import ControlContext
from pacscore.testing.corpus import generateCorpus
from tests.interop.server import PacsServer
from tests.pacscore.web.htpasswd import writeUsers


class RunningArchive:
    """``archive``, ``context`` (progress lines in ``progress``) and
    ``run(command, arguments)``; stopped by ``stop`` or the test case's
    cleanup.  ``ini``: dicom.ini keys to set first; ``workdir``: the
    working folder of an earlier one, started again; ``webUsers``: the
    ``{user: password}`` of the WebUsers file ``ini`` names, written first."""

    def __init__(self, testCase, ae="PACS", listen=False, ini=None, workdir=None, webUsers=None):
        self.workdir = workdir or PacsServer(testCase.mktemp(), ae=ae, ini=ini).workdir
        if webUsers:
            writeUsers(os.path.join(self.workdir, ini["WebUsers"]), webUsers)
        self.configuration = loadConfiguration(self.workdir, self.workdir)
        self.archive = Archive(self.configuration, reactor)
        factory = self.archive.dicomFactory()
        self.archive.startup()
        self.stopped = None
        testCase.addCleanup(self.stop)
        self.port = None
        if listen:
            listening = reactor.listenTCP(0, factory, interface="127.0.0.1")
            testCase.addCleanup(listening.stopListening)
            self.port = listening.getHost().port
        self.progress = []
        self.context = ControlContext(self.archive, reactor, progress=self.progress.append, peer="test")

    def stop(self):
        """Deferred of the archive's shutdown (once)."""
        if self.stopped is None:
            self.stopped = self.archive.shutdown()
        return self.stopped

    @property
    def ae(self):
        return self.archive.aeTitle

    def know(self, other, compression="un"):
        """Put ``other`` (a listening RunningArchive) last in our acrnema.map:
        its AE title must not match the wildcard entries (V*, S*) before it."""
        acrNemaMap = self.configuration.acrNemaMap
        acrNemaMap.put(len(acrNemaMap.nodes), Node(other.ae, "127.0.0.1", str(other.port), compression))

    def run(self, command, arguments=""):
        """Deferred of the command's output."""
        return defer.maybeDeferred(command.run, arguments, self.context)

    @defer.inlineCallbacks
    def store(self, images):
        """Store corpus images through ``addimagefile``."""
        from pacscore.control.data import AddImageFile
        for image in images:
            yield self.run(AddImageFile(), image.path)

    @defer.inlineCallbacks
    def storeAgedPatients(self, folder):
        """Three patients of four images each, accessed least recently
        PAT0002, then PAT0001, then PAT0000, their images stored long ago."""
        yield self.store(generateCorpus(folder, patients=3, studiesPerPatient=1, seriesPerStudy=1, imagesPerSeries=4))
        image = self.archive.index.tables.image
        yield self.archive.index.runWrite(lambda connection: connection.execute(image.update().values(AccessTime=100)))
        patient = self.archive.index.tables.patient
        for patientID, accessed in (("PAT0000", 300), ("PAT0001", 200), ("PAT0002", 100)):
            yield self.archive.index.runWrite(
                lambda connection, p, t: connection.execute(
                    patient.update().where(patient.c.PatientID == p).values(AccessTime=t)), patientID, accessed)

    def redate(self, patientID, date):
        """Deferred: the studies and series of ``patientID`` dated ``date``
        (StudyDate, SeriesDate) in the index, a corpus's all being 20240102."""
        tables = self.archive.index.tables

        def update(connection):
            connection.execute(tables.study.update().where(tables.study.c.PatientID == patientID)
                               .values(StudyDate=date))
            connection.execute(tables.series.update().where(tables.series.c.SeriesPat == patientID)
                               .values(SeriesDate=date))
        return self.archive.index.runWrite(update)

    def count(self, level):
        """Deferred of the number of rows of one index table ('patient' ... 'worklist')."""
        table = getattr(self.archive.index.tables, level)
        return self.archive.index.runQuery(
            lambda connection: connection.execute(select(func.count()).select_from(table)).scalar())

    def files(self):
        """The DICOM files on MAG0 (the database folder left out)."""
        found = []
        for folder, subfolders, names in os.walk(self.archive.devices[0].path):
            subfolders[:] = [d for d in subfolders if not d.startswith(".") and d != "dbase"]
            found += [os.path.join(folder, name) for name in names]
        return sorted(found)
