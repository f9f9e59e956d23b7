"""The move commands of the control port (manual appendix 6, "DICOM move
options"): ``movepatient``, ``movestudy``, ``movestudies``, ``moveseries``,
and Conquest's ``moveaccession`` (the studies of an Accession Number).

The source is ``(local)`` (or empty, or our own AE title): the objects
are sent from this archive as C-STOREs, exactly as a forward of the export
queue (``Forwarder.forward``: the destination's compression, associations
per ForwardAssociationLevel); the destination must be in our acrnema.map.
Any other source (in our acrnema.map) is asked for a C-MOVE to the
destination, which it must know, through our DICOM client
(``Forwarder.get``; a date range first finds the studies with a C-FIND).
An object sent from here that cannot go (``forwarder.LeftOut``: not
converted, its SOP class refused) is left out, as is one the destination
answers A9xx or Cxxx (``forwarder.RefusedForGood``); one it answers
another failure status is failed, the rest sent on the same association;
the command then fails saying how many were left out or failed
(``forwarder.Undelivered``).  Progress is reported every
``PROGRESS_EVERY`` objects. Study and series
UIDs must be UIDs (digits and dots), patient IDs exact (no wildcards).
The objects sent from this archive are counted in ``SENT_COUNTER``, part
of the images sent that ``--display_status`` shows, as C-MOVE's are.
"""

from twisted.internet import defer
from twisted.logger import Logger

from pacscore.control.arguments import ControlCommand, fields
from pacscore.control.context import CommandError
from pacscore.control.deletes import studyDates
from pacscore.control.stored import exactValue, isLocal, uidValue
from pacscore.dicom import commands
from pacscore.export.fetch import DicomWebFetcher
from pacscore.export.forwarder import Forwarder, ForwardError
from pacscore.export.queue import Action, Target
from pacscore.export.stow import dicomWebServers

PROGRESS_EVERY = 10
SENT_COUNTER = "moveCommandObjects"  # in archive.counters: pacs_move_command_objects_total
PENDING = (0xFF00, 0xFF01)


def optional(text, what, value=exactValue):
    """An optional identifier: '' or ``value(text, what)``."""
    return value(text, what) if text.strip() else ""


def forwarderFor(archive):
    """A ``Forwarder`` sending from ``archive`` (``closeAll()`` when done)."""
    return Forwarder.fromConfiguration(archive.configuration, archive.reactor, archive.aeTitle, archive.index,
                                       archive.query, archive.objectReader, archive.workers,
                                       archive.compressionScripts, DicomWebFetcher(archive))


class _Move(ControlCommand):
    """``source,destination,selection``; ``select(text)`` gives
    ``(level, Target, filters)`` of what to move."""

    log = Logger()

    def run(self, arguments, context):
        source, destination, selection = fields(arguments, 3)
        level, target, filters = self.select(selection)
        return defer.ensureDeferred(self._move(context, source, destination, level, target, filters))

    async def _move(self, context, source, destination, level, target, filters):
        archive = context.archive
        acrNemaMap = archive.configuration.acrNemaMap
        remote = not isLocal(archive, source)
        if not destination:
            raise CommandError("no destination AE given")
        # A remote source must know the destination; we must know whom we send to or ask.
        known = source if remote else destination
        if acrNemaMap.lookup(known) is None and known.strip().upper() not in dicomWebServers(archive.configuration):
            raise CommandError(f"{known!r} is not in acrnema.map (nor a DICOMweb server of dicom.ini)")
        forwarder = forwarderFor(archive)
        action = Action(0, "forward", destination, level, target, "", filters, 0)
        try:
            if remote:
                result = await self._remote(context, forwarder, action._replace(action="get", destination=source),
                                            destination)
            else:
                result = await self._local(context, forwarder, action)
        except ForwardError as e:
            raise CommandError(str(e)) from e
        finally:
            await forwarder.closeAll()
        self.log.info("{peer}: {command} from {source} to {destination}: {result}", peer=context.peer,
                      command=self.name, source=source or "(local)", destination=destination, result=result)
        return result

    async def _local(self, context, forwarder, action):
        total = 0

        def sent(count):  # told after each object, also one left out or failed
            nonlocal total
            if count > total and count % PROGRESS_EVERY == 0:
                context.progress(f"{count} object(s) sent to {action.destination}")
            total = count

        try:
            count = await forwarder.forward(action, onSent=sent, carryOn=True)  # Undelivered: not all arrived
        finally:  # what went before a failure was sent too
            counters = context.archive.counters
            counters[SENT_COUNTER] = counters.get(SENT_COUNTER, 0) + total
        if not count:
            raise CommandError(f"{self.name}: no stored object to send")
        return f"{count} object(s) sent to {action.destination}"

    async def _remote(self, context, forwarder, action, destination):
        counts = MoveCounts(context, destination)
        moves = await forwarder.get(action, moveTo=destination, onResponse=counts.update)
        return (f"{counts.completed} object(s) moved from {action.destination} to {destination} "
                f"({counts.failed} failed, {counts.warning} warning(s)) in {moves} C-MOVE(s)")

    def select(self, text):
        raise NotImplementedError


class MoveCounts:
    """Adds up the sub-operation counters of the C-MOVE responses."""

    def __init__(self, context, destination):
        self.context = context
        self.destination = destination
        self.completed = self.failed = self.warning = 0
        self.reported = 0

    def update(self, command):
        completed = command.get(commands.COMPLETED_SUBOPERATIONS, 0)
        if command.get(commands.STATUS) in PENDING:
            done = self.completed + completed
            if done >= self.reported + PROGRESS_EVERY:
                self.reported = done
                self.context.progress(f"{done} object(s) moved to {self.destination}, "
                                      f"{command.get(commands.REMAINING_SUBOPERATIONS, '?')} remaining")
            return
        self.completed += completed
        self.failed += command.get(commands.FAILED_SUBOPERATIONS, 0)
        self.warning += command.get(commands.WARNING_SUBOPERATIONS, 0)


class MovePatient(_Move):
    name = "movepatient"
    usage = "--movepatient:source,dest,patid  Move patient, source e.g. (local)"

    def select(self, text):
        return "PATIENT", Target(exactValue(text, "patient ID")), {}


class MoveStudy(_Move):
    name = "movestudy"
    usage = "--movestudy:source,dest,patid:studyuid  Move study, patid: optional"

    def select(self, text):
        patientID, _, study = text.rpartition(":")
        return "STUDY", Target(optional(patientID, "patient ID"), uidValue(study, "study UID")), {}


class MoveAccession(_Move):
    name = "moveaccession"
    usage = "--moveaccession:source,dest,patid:accession  Move studies by AccessionNumber, patid: optional"

    def select(self, text):
        patientID, _, accession = text.rpartition(":")
        return "PATIENT", Target(optional(patientID, "patient ID")), {"accession": exactValue(accession,
                                                                                              "accession number")}


class MoveStudies(_Move):
    name = "movestudies"
    usage = "--movestudies:source,dest,date(range)  Move studies on date"

    def select(self, text):
        # Every patient (an empty PatientID matches all) narrowed by the date.
        return "PATIENT", Target(), {"date": studyDates(text)}


class MoveSeries(_Move):
    name = "moveseries"
    usage = "--moveseries:src,dst,patid:seruid,stuid  Move series patid: optional"

    def select(self, text):
        selection, _, study = text.partition(",")
        patientID, _, series = selection.rpartition(":")
        return "SERIES", Target(optional(patientID, "patient ID"), optional(study, "study UID", uidValue),
                                uidValue(series, "series UID")), {}
