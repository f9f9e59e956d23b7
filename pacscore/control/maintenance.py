"""The maintenance commands of the control port (manual appendix 6,
"Maintenance options"): ``regen``, ``regendev``, ``regendir``,
``regenfile``, ``initializetables``, ``makespace``.

Regeneration runs the ``Regenerator`` (``pacscore.storage.regen``) in a
worker of the I/O pool while the DICOM service keeps serving; its batches
go to the index writer (``Index.runWrite``), in order with the stores of
incoming objects, and its report lines become progress lines.  ``regen``
first drops and recreates the image tables, like ``initializetables``,
also in the writer.  ``regen`` and ``regendev`` mark the devices they
regenerate until complete (``pacscore.db.regenmarks``), in the transaction
that clears the tables; ``InterruptedRegen`` runs one that a stop cut short
again at the next start.  Until a regen of marked devices is complete the
index's ``completeness`` names them: the export queue and the storage
commitment checks wait (``initializetables``, clearing the marks, ends
that for the devices no regen re-enters now).  While a regen of marked
devices runs (from before the tables are cleared), a store whose study or
series has no row yet is refused with a transient failure (``Index.rebuilding``): its links
to a patient or study cannot be checked until the files are re-entered,
and the files stores write are recorded (``ObjectStore.recordingWrites``):
the older copies of their objects that they left on disk are removed by
the regen.  ``regendir`` and ``regenfile`` clear no table: they remove
nothing.
``makespace`` deletes whole patients, first those Conquest's ``LRUSort``
names (by default the first entered), until MAG0 has the space asked for
(the archive's ``SpaceKeeper``).
"""

import os
from contextlib import ExitStack, contextmanager

from twisted.internet import defer, threads
from twisted.logger import Logger

from pacscore.control.arguments import AsyncControlCommand, ControlCommand, fields, number
from pacscore.control.context import CommandError
from pacscore.control.stored import storedFile, storedName
from pacscore.storage.devices import checkPresent
from pacscore.storage.regen import MissingDeviceError, Regenerator, checkDeviceFolders
from pacscore.storage.space import MEGABYTE


def writerWrites(index, reactor):
    """``write(fn, *args)`` for a ``Regenerator`` in a worker thread: a
    ``runWrite`` of the running index, in order with the stores."""
    def write(fn, *args):
        return threads.blockingCallFromThread(reactor, index.runWrite, fn, *args)
    return write


def _initialize(connection, index, worklist, regenerating=()):
    index.initializeTables(worklist=worklist, connection=connection, regenerating=regenerating)


def _initializeTables(connection, index, worklist, worklistItems):
    """``initializetables``: then the worklist's status column, in use again
    once a remade worklist table has it."""
    _initialize(connection, index, worklist)
    worklistItems.checkStatusColumn(connection)


def _mark(connection, index, deviceNames):
    index.regens.mark(connection, deviceNames)


def _unmark(connection, index, deviceNames):
    index.regens.unmark(connection, deviceNames)


@contextmanager
def regeneratorOf(archive, reactor, marked, report):
    """While in it, a ``Regenerator`` of the running ``archive``, writing
    through its index writer and giving ``report`` its lines from the
    worker's thread.  For a regen of the ``marked`` devices (their names;
    entered before the tables are cleared) the index is ``rebuilding``
    them (and its ``completeness`` names them until ``runRegenerator``
    ends), and the regenerator removes the older copies of the objects
    stores write again meanwhile (``ObjectStore.recordingWrites``,
    ``removeReplaced``); with none marked (regendir, regenfile: no table
    cleared, a store finds the rows), it removes nothing."""
    store = archive.objectStore
    with ExitStack() as stack:
        written = None
        if marked:
            stack.enter_context(archive.index.completeness.regenerating(marked))
            stack.enter_context(archive.index.rebuilding())
            written = stack.enter_context(store.recordingWrites())
        yield Regenerator(archive.index, archive.configuration.layout.indexedTags(), archive.devices,
                          report=report, skip=archive.databaseFiles, write=writerWrites(archive.index, reactor),
                          removeReplaced=store.removeReplaced, written=written, mirrors=archive.mirrors,
                          listedNow=store.isListed)


async def runRegenerator(archive, regenerator, work, marked=()):
    """``work(regenerator)`` in a worker; then the marks of ``marked``
    (device names) are removed: their regeneration is complete (the index
    ``completeness`` is told).  The
    ``Regenerator``."""
    await archive.workers.deferToWorker(work, regenerator)
    if marked:
        await archive.index.runWrite(_unmark, archive.index, list(marked))
        archive.index.completeness.reentered(marked)
    return regenerator


def summary(regenerator):
    """The counts of a finished ``Regenerator``, as one line."""
    leftOut = f", {regenerator.leftOut} left out (PRINTER_FILES)" if regenerator.leftOut else ""
    return (f"{regenerator.indexed} file(s) indexed, {regenerator.failed} failed, "
            f"{regenerator.duplicates} duplicate SOP instance(s){leftOut}")


def warnOfLeftOut(log, regenerator, what):
    """Warn in ``log`` of each folder ``regenerator`` left out (a
    ``PRINTER_FILES``, its files counted), ``what`` naming the regen."""
    for line in regenerator.warnings:
        log.warn("{what}: {line}", what=what, line=line)


class InterruptedRegen:
    """At start-up: the regeneration of ``deviceNames`` (``RegenMarks``)
    was interrupted, the index may miss their objects: ``run`` re-enters
    their files, while the server serves, as ``regendev`` would."""

    log = Logger()

    def __init__(self, archive, reactor, deviceNames):
        self.archive = archive
        self.reactor = reactor
        self.deviceNames = deviceNames

    def run(self):
        """Deferred firing when done (a failure is logged; the marks then
        stay for the next start)."""
        names = ", ".join(self.deviceNames)
        self.log.warn("a regen of {devices} was interrupted (the server stopped during it): running it again; "
                      "until it ends, queries and retrieves may miss objects stored there, and the export queue "
                      "and storage commitment checks wait", devices=names)
        d = defer.ensureDeferred(self._regenerate())
        d.addCallback(lambda regenerator: self.log.info("the interrupted regen of {devices} is complete: {summary}",
                                                        devices=names, summary=summary(regenerator)))
        d.addErrback(lambda failure: self.log.failure(
            "the interrupted regen of {devices} failed; it runs again at the next start", failure, devices=names))
        return d

    async def _regenerate(self):
        devices = [device for device in self.archive.devices if device.name in self.deviceNames]
        with regeneratorOf(self.archive, self.reactor, self.deviceNames, self._report) as regenerator:
            await runRegenerator(self.archive, regenerator, lambda regenerator: regenerator.regenerate(devices),
                                 self.deviceNames)
        warnOfLeftOut(self.log, regenerator, "regen")
        return regenerator

    def _report(self, line):
        """A progress line, from the worker's thread."""
        self.reactor.callFromThread(self.log.info, "regen: {line}", line=line)


def device(archive, name):
    """The MAG device called ``name``; CommandError if there is none."""
    for candidate in archive.devices:
        if candidate.name.upper() == name.strip().upper():
            return candidate
    raise CommandError(f"no device {name.strip()!r} ({', '.join(d.name for d in archive.devices)})")


async def checkDevicePresent(archive, magDevice):
    """CommandError 'MAGn is not there (a disk not mounted?)' when the
    folder of ``magDevice`` is missing (checked in a worker)."""
    try:
        await archive.workers.deferToWorker(checkPresent, magDevice)
    except FileNotFoundError as e:
        raise CommandError(e.strerror) from None


def _checkFolders(devices):
    """CommandError when a device's folder is missing, before the index is touched."""
    try:
        checkDeviceFolders(devices)
    except MissingDeviceError as e:
        raise CommandError(str(e)) from None


class _Regen(AsyncControlCommand):
    """Runs ``work(regenerator)`` in a worker; the devices it regenerates
    in full are marked (``RegenMarks``) until it is complete, and meanwhile
    stores of studies not re-entered yet refused (``Index.rebuilding``)
    and the older copies of objects stored again removed (``regeneratorOf``)."""

    log = Logger()

    async def execute(self, arguments, context):
        archive = context.archive
        marked, work = self.prepare(archive, arguments)
        with regeneratorOf(archive, context.reactor, marked, context.progressFromThread) as regenerator:
            await self.before(archive, marked)
            try:
                await runRegenerator(archive, regenerator, work, marked)
            except Exception:
                if marked:
                    self.log.failure("{peer}: {command}:{arguments} failed: the index may miss objects of {devices}, "
                                     "which stay marked (PacsRegen): the regen runs again at the next start, or run "
                                     "it again now; the export queue and storage commitment checks wait until it "
                                     "is complete", peer=context.peer, command=self.name, arguments=arguments,
                                     devices=", ".join(marked))
                raise
        warnOfLeftOut(self.log, regenerator, f"{context.peer}: {self.name}:{arguments}")
        counts = summary(regenerator)
        self.log.info("{peer}: {command}:{arguments}: {summary}", peer=context.peer, command=self.name,
                      arguments=arguments, summary=counts)
        return counts

    def before(self, archive, marked):
        """Mark the devices ``marked`` (their names) in the index writer."""
        return archive.index.runWrite(_mark, archive.index, marked) if marked else defer.succeed(None)

    def prepare(self, archive, arguments):
        """Check the arguments; ``(names of the devices regenerated in
        full, work(regenerator) for the worker)``."""
        raise NotImplementedError


class Regen(_Regen):
    name = "regen"
    usage = "--regen:  Re-generate entire database"

    def before(self, archive, marked):
        return archive.index.runWrite(_initialize, archive.index, False, marked)

    def prepare(self, archive, arguments):
        _checkFolders(archive.devices)
        return [device.name for device in archive.devices], lambda regenerator: regenerator.regenerate(archive.devices)


class RegenDev(_Regen):
    name = "regendev"
    usage = "--regendev:device  Re-generate database for single device"

    def prepare(self, archive, arguments):
        magDevice = device(archive, arguments)
        _checkFolders([magDevice])
        return [magDevice.name], lambda regenerator: regenerator.regenerate([magDevice])


class RegenDir(_Regen):
    name = "regendir"
    usage = "--regendir:device,dir  Re-generate database for single directory"

    def prepare(self, archive, arguments):
        name, folder = fields(arguments, 2)
        magDevice = device(archive, name)
        path = os.path.normpath(os.path.join(magDevice.path, folder.strip().replace("\\", "/")))
        if path != magDevice.path and not path.startswith(magDevice.path + os.sep):
            raise CommandError(f"{folder.strip()!r} is not a folder of {magDevice.name}")

        def work(regenerator):
            if not os.path.isdir(path):
                raise CommandError(f"no folder {path}")
            regenerator.regenerate([magDevice], path)
        return [], work


class RegenFile(_Regen):
    name = "regenfile"
    usage = "--regenfile:file  Re-enter given file in database"

    def prepare(self, archive, arguments):
        deviceName, objectFile = storedFile(archive, arguments)
        magDevice = device(archive, deviceName)

        def work(regenerator):
            regenerator.enter(magDevice, [(magDevice.absolute(objectFile), objectFile)])
            if not (regenerator.indexed or regenerator.duplicates):  # a duplicate: the newer copy is indexed
                raise CommandError(f"{storedName(deviceName, objectFile)} could not be entered")
        return [], work


class InitializeTables(ControlCommand):
    name = "initializetables"
    usage = "--initializetables:[1|2]  Clear and create database (1: same; 2: the worklist only)"
    log = Logger()

    def run(self, arguments, context):
        argument = arguments.strip()
        if argument not in ("", "0", "1", "2"):
            raise CommandError(f"initializetables:{argument}: expected nothing, 1 or 2")
        index = context.archive.index
        worklist = argument == "2"
        tables = [index.tables.worklist] if worklist else list(index.tables[:4])
        names = ", ".join(table.name for table in tables)
        self.log.info("{peer}: initializing {names}", peer=context.peer, names=names)
        d = index.runWrite(_initializeTables, index, worklist, context.archive.worklistItems)
        if not worklist:  # the regen marks cleared too
            d.addCallback(lambda _: index.completeness.marksCleared())
        return d.addCallback(lambda _: f"Initialized {names}")


class MakeSpace(AsyncControlCommand):
    name = "makespace"
    usage = "--makespace:#  Delete old patients to make #MB space"
    log = Logger()

    async def execute(self, arguments, context):
        megabytes = number(arguments, "#")
        keeper = context.archive.spaceKeeper
        lines = []

        def report(line):
            lines.append(line)
            context.progress(line)
            self.log.info("{peer}: makespace: {line}", peer=context.peer, line=line)

        free = await keeper.makeSpace(megabytes * MEGABYTE, report, anywhere=True)  # Conquest's -ff: LargestFreeMAG
        device = keeper.where(True)
        if free < megabytes * MEGABYTE:
            raise CommandError(f"only {free // MEGABYTE} MB free on {device} after deleting {len(lines)} patient(s)")
        return "\n".join(lines + [f"{free // MEGABYTE} MB free on {device}"])
