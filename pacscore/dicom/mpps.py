"""Modality Performed Procedure Step SCP (PS3.4 annex F.7): what a modality
reports of the procedure it performs, N-CREATE when it starts (status IN
PROGRESS) and N-SET as it goes (COMPLETED or DISCONTINUED at the end, with
the series it made).  Not in Conquest; as in dcm4chee.

Each step is a row of ``PacsMPPS`` in the index database: its status, the
attributes a list shows (patient, accession number and study of the
scheduled step, modality, station, start and end) and the whole data set
(Explicit VR Little Endian) with every N-SET applied, written by the index
writer before the answer.  The standard's rules answer the rest: a create
without an attribute table F.7.2-1 requires of it (type 1: the step's ID,
station, start, status, modality, the scheduled steps with their Study
Instance UIDs) is 0x0120, with one empty 0x0121, named in the Error
Comment (as dcm4chee refuses them); a create or set with a value
longer than its VR's 16-bit length takes in Explicit VR (over 64 KB,
which pydicom would keep as UN) is 0x0106, naming it; a create
not IN PROGRESS is 0x0106 (the status is a CS: upper case only), a second
create of an instance 0x0111, an instance UID that is none 0x0117, a set of
an unknown one 0x0112, a set after COMPLETED or DISCONTINUED 0x0110 (Error
ID 0xA710 and the standard's comment), a set of an attribute table F.7.2-1
does not allow in N-SET (the patient, the scheduled steps, the step's
identity and start: only the SCP may correct those) 0x0106, a set to
COMPLETED or DISCONTINUED that leaves the step without what table F.7.2-1
requires of its Final State (the end date and time, a performed series)
0x0121, naming them, and not applied, as dcm4chee refuses it.  A set's
Specific Character Set does not replace the step's (F.7.2.2.3): both are
decoded and the step kept in UTF-8.

In the same transaction, the worklist items of the step's scheduled steps
(by the Accession Numbers of its Scheduled Step Attributes Sequence, but
never one whose Scheduled Procedure Step ID, Study Instance UID, Requested
Procedure ID or Patient ID differs from the step's where both have one:
such an item is another's, left as it is with a warning) get
the Scheduled Procedure Step Status its status means - STARTED, COMPLETED
or DISCONTINUED, as dcm4chee sets them - when dicom.sql gives the worklist
a (0040,0020) column (``WorklistItems.markPerformed``); an item another step
still IN PROGRESS performs is not made DISCONTINUED (IHE SWF: a scheduled
step is discontinued only when none of its performed steps goes on), it
stays STARTED, logged; a step discontinued
because the wrong worklist entry was selected (reason DCM 110514) leaves
its items SCHEDULED: their procedure was not performed; only those still
STARTED, though, and not performed by another step still IN PROGRESS
(read from their data sets in the same transaction): an item another step
completed (or discontinued) meanwhile, or is performing, keeps its status,
logged.  A COMPLETED item stays so whatever
a later step does: a step that picked it by mistake neither starts it
again nor discontinues it.  The message is
queued for the AEs of ``ForwardMPPSTo`` (``pacscore.dicom.mppsforward``),
which get it once it was answered.
"""

from pydicom.charset import convert_encodings
from pydicom.datadict import keyword_for_tag as keyword
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.multival import MultiValue
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32
from pydicom.uid import generate_uid
from sqlalchemy import Column, Double, Index, String, Table, select
from twisted.internet import defer, threads
from twisted.logger import Logger

from pacscore.codecs.syntaxes import EXPLICIT_VR_LITTLE_ENDIAN
from pacscore.db.errors import ValueTooLarge
from pacscore.db.schema import LARGE_BINARY, MYSQL_TABLE, OwnTable, checkFits
from pacscore.db.worklistitems import IDENTIFYING, PATIENT_ID, SCHEDULED, STARTED, Marked
from pacscore.db.worklistitems import COMPLETED as ITEM_COMPLETED
from pacscore.db.worklistitems import DISCONTINUED as ITEM_DISCONTINUED
from pacscore.dicom import commands
from pacscore.dicom.commands import (
    DUPLICATE_SOP_INSTANCE, INVALID_ATTRIBUTE_VALUE, INVALID_OBJECT_INSTANCE, MISSING_ATTRIBUTE,
    MISSING_ATTRIBUTE_VALUE, NO_SUCH_OBJECT_INSTANCE, PROCESSING_FAILURE)
from pacscore.converters.elements import ensureUnicode
from pacscore.dicom.datasets import IdentifierError, decodeDataset, decodePeerDataset, encodeDataset
from pacscore.dicom.identifiers import tagName
from pacscore.dicom.uids import isUID

MPPS = "1.2.840.10008.3.1.2.3.3"
IN_PROGRESS, COMPLETED, DISCONTINUED = "IN PROGRESS", "COMPLETED", "DISCONTINUED"
STATUSES = (IN_PROGRESS, COMPLETED, DISCONTINUED)
# the Scheduled Procedure Step Status (0040,0020) of a worklist item whose step is performed
SCHEDULED_STEP_STATUS = {IN_PROGRESS: STARTED, COMPLETED: ITEM_COMPLETED, DISCONTINUED: ITEM_DISCONTINUED}
WRONG_WORKLIST_ENTRY = ("110514", "DCM")  # the discontinuation reason "Incorrect worklist entry selected"

SUCCESS = 0x0000
MAY_NO_LONGER_BE_UPDATED = 0xA710  # the Error ID of a set after the end
ENDED_COMMENT = "Performed Procedure Step Object may no longer be updated"  # table F.7.2-2
SPECIFIC_CHARACTER_SET = 0x00080005
# table F.7.2-1: attributes an N-SET may not carry (only the SCP corrects them)
NOT_SET = {0x00080016: "SOP Class UID", 0x00080018: "SOP Instance UID", 0x00080060: "Modality",
           0x00081120: "Referenced Patient Sequence", 0x00100010: "Patient's Name", 0x00100020: "Patient ID",
           0x00100021: "Issuer of Patient ID", 0x00100030: "Patient's Birth Date", 0x00100040: "Patient's Sex",
           0x00200010: "Study ID", 0x00400241: "Performed Station AE Title", 0x00400242: "Performed Station Name",
           0x00400243: "Performed Location", 0x00400244: "Performed Procedure Step Start Date",
           0x00400245: "Performed Procedure Step Start Time", 0x00400253: "Performed Procedure Step ID",
           0x00400270: "Scheduled Step Attributes Sequence"}

# the columns a list shows: (column, keyword of the step, or of the first scheduled step's item)
SHOWN = (("PatientID", "PatientID", False), ("PatientName", "PatientName", False),
         ("AccessionNumber", "AccessionNumber", True), ("StudyInstanceUID", "StudyInstanceUID", True),
         ("Modality", "Modality", False), ("StationAE", "PerformedStationAETitle", False),
         ("StepID", "PerformedProcedureStepID", False),
         ("Description", "PerformedProcedureStepDescription", False),
         ("StartDate", "PerformedProcedureStepStartDate", False),
         ("StartTime", "PerformedProcedureStepStartTime", False),
         ("EndDate", "PerformedProcedureStepEndDate", False), ("EndTime", "PerformedProcedureStepEndTime", False))


def buildTable(metadata):
    return Table(
        "PacsMPPS", metadata,
        Column("SOPInstanceUID", String(64), primary_key=True),
        Column("Status", String(16), nullable=False),
        *(Column(column, String(64), nullable=False, default="") for column, _, _ in SHOWN),
        Column("CallingAE", String(16), nullable=False, default=""),
        Column("Created", Double, nullable=False),
        Column("Updated", Double, nullable=False),
        Column("Dataset", LARGE_BINARY, nullable=False),
        Index("ix_PacsMPPS_AccessionNumber", "AccessionNumber"), **MYSQL_TABLE)


# table F.7.2-1: what an N-CREATE must carry with a value (type 1 for the SCU)
REQUIRED_ON_CREATE = {0x00400270: "Scheduled Step Attributes Sequence", 0x00400253: "Performed Procedure Step ID",
                      0x00400241: "Performed Station AE Title", 0x00400244: "Performed Procedure Step Start Date",
                      0x00400245: "Performed Procedure Step Start Time", 0x00080060: "Modality"}
STUDY_INSTANCE_UID = 0x0020000D
# table F.7.2-1: what a COMPLETED or DISCONTINUED step must hold with a value (its Final State, type 1)
REQUIRED_AT_END = {0x00400250: "Performed Procedure Step End Date", 0x00400251: "Performed Procedure Step End Time",
                   0x00400340: "Performed Series Sequence"}


class StepRefused(Exception):
    """A request the standard refuses: ``status`` (and ``errorID``) to
    answer, the message as its Error Comment; ``detail`` for the log only."""

    def __init__(self, message, status, errorID=None, detail=""):
        super().__init__(message)
        self.status = status
        self.errorID = errorID
        self.detail = detail


def checkRequired(dataset):
    """StepRefused (0x0120 or 0x0121, naming what it lacks) unless ``dataset`` has
    every attribute an N-CREATE requires, with a value."""
    missing = [tag for tag in REQUIRED_ON_CREATE if tag not in dataset]
    empty = [tag for tag in REQUIRED_ON_CREATE if tag in dataset and dataset[tag].is_empty]
    for item in dataset.get("ScheduledStepAttributesSequence", None) or []:
        if STUDY_INSTANCE_UID not in item:
            missing.append(STUDY_INSTANCE_UID)
        elif item[STUDY_INSTANCE_UID].is_empty:
            empty.append(STUDY_INSTANCE_UID)
    for tags, status, what in ((missing, MISSING_ATTRIBUTE, "without"), (empty, MISSING_ATTRIBUTE_VALUE, "with no")):
        if tags:
            tags = sorted(set(tags))
            names = ", ".join(REQUIRED_ON_CREATE.get(tag, "Study Instance UID") for tag in tags)
            raise StepRefused(f"N-CREATE {what} {names}", status)


def checkEncodable(dataset):
    """StepRefused (0x0106, naming them) when values of ``dataset`` are
    longer than their VR's 16-bit length takes in Explicit VR, in which
    the step is kept (in its character set, or UTF-8 once set): pydicom
    would keep them as UN, with only its warning."""
    charsets = (convert_encodings(dataset.get("SpecificCharacterSet") or "ISO_IR 6"), ["utf_8"])
    tooLong = sorted({element.tag for element in dataset.iterall()
                      if any(_valueLength(element, encodings) > 0xFFFF for encodings in charsets)})
    if tooLong:
        raise StepRefused(f"value too long for its VR (over 64 KB): {', '.join(map(tagName, tooLong))}",
                          INVALID_ATTRIBUTE_VALUE)


def _decodeChecked(data, syntax):
    dataset = decodePeerDataset(data, syntax)
    checkEncodable(dataset)
    return dataset


def _valueLength(element, encodings):
    """The encoded length of ``element``'s value, 0 for a VR whose length
    is 32-bit in Explicit VR (a sequence's items are elements of their own)
    and for one too short to reach 64 KB (at most 8 bytes a character)."""
    if element.VR in EXPLICIT_VR_LENGTH_32 or element.is_empty:
        return 0
    values = element.value if isinstance(element.value, (list, MultiValue)) else [element.value]
    if sum(len(str(value)) + 1 for value in values) * 8 <= 0xFFFF:
        return 0
    encoded = DicomBytesIO()
    encoded.is_little_endian, encoded.is_implicit_VR = True, True  # a 32-bit length: no UN
    write_data_element(encoded, element, encodings)
    return len(encoded.getvalue()) - 8  # its tag and length


def checkFinal(dataset, status):
    """StepRefused (0x0121, naming what it lacks) when a step in ``status``
    COMPLETED or DISCONTINUED lacks a value its Final State requires."""
    if status == IN_PROGRESS:
        return
    empty = [name for tag, name in REQUIRED_AT_END.items() if tag not in dataset or dataset[tag].is_empty]
    if empty:
        raise StepRefused(f"{status} with no {', '.join(empty)}", MISSING_ATTRIBUTE_VALUE)


def _text(dataset, keyword):
    value = dataset.get(keyword, "")
    return "" if value is None else str(value).strip()[:64]


def shownValues(dataset):
    """``{column: text}`` of the list columns of a step's data set."""
    scheduled = dataset.get("ScheduledStepAttributesSequence", None) or [Dataset()]
    return {column: _text(scheduled[0] if inScheduled else dataset, keyword) for column, keyword, inScheduled in SHOWN}


def scheduledAccessions(dataset):
    """The Accession Numbers of the scheduled steps a step performs."""
    return sorted(scheduledSteps(dataset))


def scheduledSteps(dataset):
    """``{accession number: {tag: value}}`` of the scheduled steps a step
    performs: what names their worklist items besides it (``IDENTIFYING``:
    the step's Patient ID, each item's Scheduled Procedure Step ID, Study
    Instance UID and Requested Procedure ID), empty values left out."""
    patient = _text(dataset, "PatientID")
    steps = {}
    for item in dataset.get("ScheduledStepAttributesSequence", None) or []:
        accession = _text(item, "AccessionNumber")
        if accession:
            values = {tag: _text(item, keyword(tag)) for tag in IDENTIFYING if tag != PATIENT_ID}
            values[PATIENT_ID] = patient
            steps.setdefault(accession, {tag: value for tag, value in values.items() if value})
    return steps


def _isStarted(itemStatus):
    return itemStatus == STARTED


def _isNotCompleted(itemStatus):
    return itemStatus != ITEM_COMPLETED


def scheduledStepStatus(dataset, status):
    """The Scheduled Procedure Step Status of the worklist items of a step
    in ``status``: SCHEDULED again when it was discontinued because the
    wrong worklist entry was selected."""
    reasons = dataset.get("PerformedProcedureStepDiscontinuationReasonCodeSequence", None) or []
    if status == DISCONTINUED and any((_text(code, "CodeValue"), _text(code, "CodingSchemeDesignator"))
                                      == WRONG_WORKLIST_ENTRY for code in reasons):
        return SCHEDULED
    return SCHEDULED_STEP_STATUS[status]


def stepStatus(dataset, required):
    """The Performed Procedure Step Status of ``dataset`` (None when absent
    and not ``required``); StepRefused otherwise."""
    if "PerformedProcedureStepStatus" not in dataset:
        if required:
            raise StepRefused("no Performed Procedure Step Status (0040,0252)", MISSING_ATTRIBUTE)
        return None
    status = _text(dataset, "PerformedProcedureStepStatus")
    if status not in STATUSES:
        raise StepRefused(f"Performed Procedure Step Status {status!r} is not one of {', '.join(STATUSES)}",
                          INVALID_ATTRIBUTE_VALUE)
    return status


def storedData(connection, dataset):
    """In the writer: ``dataset`` encoded for the Dataset column;
    StepRefused (0x0110) when it is larger than the index database takes in
    one statement."""
    data = encodeDataset(dataset, EXPLICIT_VR_LITTLE_ENDIAN)
    try:
        checkFits(connection, data)
    except ValueTooLarge as e:
        raise StepRefused("the data set is too large for the index database", PROCESSING_FAILURE,
                          detail=str(e)) from e
    return data


class StepTable(OwnTable):
    """The ``PacsMPPS`` table of the index database (``index``)."""

    build = staticmethod(buildTable)

    def create(self, connection, uid, dataset, callingAE):
        """In the writer: insert the step ``uid``; StepRefused when it exists."""
        table = self.table
        if connection.execute(select(table.c.SOPInstanceUID).where(table.c.SOPInstanceUID == uid)).first():
            raise StepRefused(f"performed procedure step {uid} exists already", DUPLICATE_SOP_INSTANCE)
        now = self.clock()
        connection.execute(table.insert().values(
            SOPInstanceUID=uid, Status=IN_PROGRESS, CallingAE=callingAE[:16], Created=now, Updated=now,
            Dataset=storedData(connection, dataset), **shownValues(dataset)))

    def update(self, connection, uid, changes):
        """In the writer: apply the attributes of ``changes`` to the step
        ``uid``; ``(its new data set, its status)``. StepRefused for an
        unknown or ended step."""
        table = self.table
        row = connection.execute(select(table.c.Status, table.c.Dataset).where(table.c.SOPInstanceUID == uid)).first()
        if row is None:
            raise StepRefused(f"no performed procedure step {uid}", NO_SUCH_OBJECT_INSTANCE)
        if row.Status != IN_PROGRESS:
            raise StepRefused(ENDED_COMMENT, PROCESSING_FAILURE, MAY_NO_LONGER_BE_UPDATED,
                              f"performed procedure step {uid} is {row.Status}")
        dataset = decodeDataset(row.Dataset, EXPLICIT_VR_LITTLE_ENDIAN)
        ensureUnicode(dataset)
        ensureUnicode(changes)  # each decoded with its own character set; the step's stays (UTF-8)
        for element in changes:
            if element.tag != SPECIFIC_CHARACTER_SET:
                dataset[element.tag] = element
        status = stepStatus(dataset, required=True)
        checkFinal(dataset, status)
        connection.execute(table.update().where(table.c.SOPInstanceUID == uid).values(
            Status=status, Updated=self.clock(), Dataset=storedData(connection, dataset), **shownValues(dataset)))
        return dataset, status

    def accessionsInProgress(self, connection, besides):
        """In the writer: the Accession Numbers of the scheduled steps the
        steps IN PROGRESS but ``besides`` perform (few: those whose
        modality has not ended them)."""
        table = self.table
        rows = connection.execute(select(table.c.Dataset).where(
            table.c.Status == IN_PROGRESS, table.c.SOPInstanceUID != besides))
        return {accession for row in rows
                for accession in scheduledAccessions(decodeDataset(row.Dataset, EXPLICIT_VR_LITTLE_ENDIAN))}

    def steps(self, connection, limit):
        """In a reader: the last ``limit`` steps started, newest first, as dicts."""
        table = self.table
        query = select(*(column for column in table.c if column.name != "Dataset")).order_by(
            table.c.Created.desc()).limit(limit)
        return [dict(row._mapping) for row in connection.execute(query)]


class MppsService:
    """Answers N-CREATE and N-SET on the MPPS SOP class; see the module docstring."""

    log = Logger()

    def __init__(self, steps, reactor, newUID=generate_uid, counters=None, worklist=None, forwarder=None):
        self.steps = steps
        self.reactor = reactor  # its thread pool decodes the data sets
        self.worklist = worklist  # WorklistItems
        self.forwarder = forwarder  # MppsForwarder
        self.newUID = newUID  # the UID of a step whose N-CREATE gives none (under UIDPrefix as it is then)
        self.counters = counters if counters is not None else {}

    def handle(self, protocol, contextId, command, dataset):
        field = command[commands.COMMAND_FIELD]
        work = self._create if field == commands.N_CREATE_RQ else self._set
        return defer.ensureDeferred(work(protocol, contextId, command, dataset))

    async def _create(self, protocol, contextId, command, dataset):
        uid = command.get(commands.AFFECTED_SOP_INSTANCE_UID) or self.newUID()
        callingAE = protocol.association.callingAE
        try:
            if not isUID(uid):
                raise StepRefused(f"{uid!r} is no SOP Instance UID", INVALID_OBJECT_INSTANCE)
            data = await self._decode(protocol, contextId, dataset)
            if stepStatus(data, required=True) != IN_PROGRESS:
                raise StepRefused("a step is created IN PROGRESS", INVALID_ATTRIBUTE_VALUE)
            checkRequired(data)
            marked = await self.steps.index.runWrite(self._createStep, uid, data, callingAE)
        except StepRefused as e:
            return self._refuse(protocol, contextId, command, commands.N_CREATE_RSP, uid, e)
        self.counters["mppsCreated"] = self.counters.get("mppsCreated", 0) + 1
        shown = shownValues(data)
        self.log.info("MPPS {uid} from {ae}: IN PROGRESS ({modality} on {station}, patient {patient}, accession "
                      "{accession})", uid=uid, ae=callingAE, modality=shown["Modality"] or "?",
                      station=shown["StationAE"] or "?", patient=shown["PatientID"],
                      accession=shown["AccessionNumber"] or "-")
        self._logMarked(uid, marked)
        protocol.sendMessage(contextId, commands.response(command, commands.N_CREATE_RSP, SUCCESS, {
            commands.AFFECTED_SOP_CLASS_UID: MPPS, commands.AFFECTED_SOP_INSTANCE_UID: uid}))
        self._forward()

    async def _set(self, protocol, contextId, command, dataset):
        uid = command.get(commands.REQUESTED_SOP_INSTANCE_UID, "")
        try:
            changes = await self._decode(protocol, contextId, dataset)
            stepStatus(changes, required=False)
            refused = [name for tag, name in NOT_SET.items() if tag in changes]
            if refused:
                raise StepRefused(f"N-SET may not change {', '.join(refused)}", INVALID_ATTRIBUTE_VALUE)
            status, marked = await self.steps.index.runWrite(self._updateStep, uid, changes)
        except StepRefused as e:
            return self._refuse(protocol, contextId, command, commands.N_SET_RSP, uid, e)
        self.counters["mppsUpdated"] = self.counters.get("mppsUpdated", 0) + 1
        self.log.info("MPPS {uid} from {ae}: {status}", uid=uid, ae=protocol.association.callingAE, status=status)
        self._logMarked(uid, marked)
        protocol.sendMessage(contextId, commands.response(command, commands.N_SET_RSP, SUCCESS, {
            commands.AFFECTED_SOP_INSTANCE_UID: uid}))
        self._forward()

    def _forward(self):
        if self.forwarder is not None:
            self.forwarder.send()

    def _record(self, connection, field, uid, dataset):
        if self.forwarder is not None:
            self.forwarder.record(connection, field, uid, dataset)

    def _createStep(self, connection, uid, data, callingAE):
        """In the writer: record a new step (and its forwards); the
        worklist items it marked (``_mark``)."""
        self.steps.create(connection, uid, data, callingAE)
        self._record(connection, commands.N_CREATE_RQ, uid, data)
        return self._mark(connection, uid, data, IN_PROGRESS)

    def _updateStep(self, connection, uid, changes):
        """In the writer: apply an N-SET (and record its forwards); the
        step's status and the worklist items it marked (``_mark``)."""
        dataset, status = self.steps.update(connection, uid, changes)
        self._record(connection, commands.N_SET_RQ, uid, changes)
        return status, self._mark(connection, uid, dataset, status)

    def _mark(self, connection, uid, dataset, status):
        """In the writer: ``(Marked, status, foreign)``, the worklist items
        the step ``uid`` marked and kept, their new status, and
        ``{accession number: why}`` of those it names by accession number
        that are another's (``WorklistItems.notTheirs``): left as they are.  Put back to
        SCHEDULED (a wrong entry selected) are only the items still STARTED
        that no other step IN PROGRESS performs: one another step
        completed, discontinued or is performing keeps its status; made
        DISCONTINUED only those no other step IN PROGRESS performs (IHE
        SWF: a scheduled step is discontinued when none of its performed
        steps goes on); a COMPLETED item keeps it whatever the step."""
        if self.worklist is None:
            return Marked([], {}), None, {}
        itemStatus = scheduledStepStatus(dataset, status)
        steps = scheduledSteps(dataset)
        foreign = self.worklist.notTheirs(connection, steps)
        accessions = sorted(set(steps) - set(foreign))
        if itemStatus not in (SCHEDULED, ITEM_DISCONTINUED):
            marked = self.worklist.markPerformed(connection, accessions, itemStatus, _isNotCompleted)
            return marked, itemStatus, foreign
        performed = self.steps.accessionsInProgress(connection, uid).intersection(accessions)
        changeable = _isStarted if itemStatus == SCHEDULED else _isNotCompleted
        return (self.worklist.markPerformed(connection, accessions, itemStatus, changeable, keep=performed),
                itemStatus, foreign)

    def _logMarked(self, uid, marked):
        (changed, kept), status, foreign = marked
        for accession, why in foreign.items():
            self.log.warn("MPPS {uid}: worklist item {accession} is not the one its scheduled step names ({why}): "
                          "left as it is", uid=uid, accession=accession, why=why)
        if changed:
            self.log.info("MPPS {uid}: worklist item(s) {accessions} now {status}", uid=uid,
                          accessions=", ".join(changed), status=status)
        if kept:
            self.log.info("MPPS {uid}: worklist item(s) {kept} keep their status, not made {status} (a COMPLETED "
                          "item stays so; one another step in progress performs is neither discontinued nor put "
                          "back to SCHEDULED; only STARTED ones go back to SCHEDULED)", uid=uid, status=status,
                          kept=", ".join(f"{accession} ({current or 'no status'})" for accession, current in kept.items()))

    async def _decode(self, protocol, contextId, dataset):
        """The Dataset of an N-CREATE or N-SET, decoded and its values'
        lengths checked (``checkEncodable``) in a worker (a big one takes
        seconds)."""
        if dataset is None:
            raise StepRefused("no data set", MISSING_ATTRIBUTE)
        try:
            return await threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), _decodeChecked,
                                                   bytes(dataset.data), protocol.association.contexts[contextId][1])
        except IdentifierError as e:
            raise StepRefused(str(e), PROCESSING_FAILURE) from e

    def _refuse(self, protocol, contextId, command, field, uid, error):
        self.log.warn("{peer}: MPPS {uid} refused (0x{status:04X}): {error}{detail}", peer=protocol.peerName(),
                      uid=uid, status=error.status, error=error, detail=f" ({error.detail})" if error.detail else "")
        extra = {commands.ERROR_COMMENT: str(error)[:64]}
        if uid:
            extra[commands.AFFECTED_SOP_INSTANCE_UID] = uid
        if error.errorID is not None:
            extra[commands.ERROR_ID] = error.errorID
        protocol.sendMessage(contextId, commands.response(command, field, error.status, extra))
