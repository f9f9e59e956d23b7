"""The delete commands of the control port (manual appendix 6, "Delete
options"): patients, studies, series, images (``deleteimage``, Conquest's
``patid:sop``) and files leave the MAG devices and
the index; ``deleteimagefromdb`` and ``deletesopfromdb`` only the index, as
do ``deletepatientfromdb``, ``deletestudyfromdb`` and ``deleteseriesfromdb``
(pacs additions: what dgate's ``-fp``, ``-ft`` and ``-fs`` send).

They find the objects with ``IndexQuery.instances`` (or by file) and
remove them through the export queue's ``LocalActions.removeInstances``:
files first, then the rows (and the series, study and patient rows left
empty) in the index writer, ordered with stores.  Each says how many
objects it removed; nothing matched is a ``CommandError``.
"""

import re

from twisted.logger import Logger

from pacscore.control.arguments import AsyncControlCommand, fields
from pacscore.control.context import CommandError
from pacscore.control.stored import exactValue, fileInstances, storedFile
from pacscore.db.query import EXACT, PATIENT_ID, SERIES_INSTANCE_UID, SOP_INSTANCE_UID, STUDY_INSTANCE_UID, QueryKey
from pacscore.dicom.datetimes import isSearchDate

STUDY_DATE = 0x00080020
_DATE_RANGE = re.compile(r"^([0-9]{8}(-([0-9]{8})?)?|-[0-9]{8})$")


def patientKey(patientID):
    return QueryKey(PATIENT_ID, "LO", exactValue(patientID, "patient ID"))


def uidKey(tag, uid, what):
    return QueryKey(tag, "UI", exactValue(uid, what))


def studyDates(text):
    """``YYYYMMDD``, ``YYYYMMDD-YYYYMMDD`` or, as Conquest passes the date
    on as a DA match, the open ``-YYYYMMDD`` (up to that day) and
    ``YYYYMMDD-`` (from that day), checked: each ``YYYYMMDD`` a real day
    from 1900 to 2199, as Conquest takes a date."""
    text = text.strip()
    if not _DATE_RANGE.match(text):
        raise CommandError(f"date {text!r}: expected YYYYMMDD, YYYYMMDD-YYYYMMDD, -YYYYMMDD or YYYYMMDD-")
    for day in filter(None, text.split("-")):
        if not isSearchDate(day):
            raise CommandError(f"date {text!r}: {day} is no day from 19000101 to 21991231")
    return text


def patientAndUID(arguments, tag, what):
    """``patid:uid`` (patid may be left out): the query keys.  The patient
    ID is matched as it is written (a ``*`` in it is a character: Patient
    IDs may hold one, and the UID selects anyway)."""
    patientID, _, uid = arguments.strip().rpartition(":")
    keys = [uidKey(tag, uid, what)]
    if patientID.strip():
        keys.append(QueryKey(PATIENT_ID, EXACT, patientID.strip()))
    return keys


class _Delete(AsyncControlCommand):
    """A delete: ``selection`` gives the Instances, ``files`` says whether
    their files go too."""

    log = Logger()
    files = True

    async def execute(self, arguments, context):
        what = arguments.strip()
        instances = await self.selection(arguments, context.archive)
        if not instances:
            raise CommandError(f"{self.name}: no stored object matches {what!r}")
        removal = await context.archive.localActions.removeInstances(instances, files=self.files)
        where = "the server" if self.files else "the database"
        kept = f", {removal.kept} kept: stored again meanwhile" if removal.kept else ""
        self.log.info("{peer}: {command}:{what}: {count} object(s) removed from {where}{kept}",
                      peer=context.peer, command=self.name, what=what, count=removal.removed, where=where, kept=kept)
        return f"{removal.removed} object(s) removed from {where}{kept}"

    def selection(self, arguments, archive):
        """Deferred of the ``Instance``s to remove."""
        return archive.index.runQuery(archive.query.instances, "IMAGE", self.keys(arguments))

    def keys(self, arguments):
        raise NotImplementedError


class DeleteImageFile(_Delete):
    name = "deleteimagefile"
    usage = "--deleteimagefile:file  Delete given image file from server"

    def selection(self, arguments, archive):
        deviceName, objectFile = storedFile(archive, arguments)
        return archive.index.runQuery(fileInstances, archive.query, deviceName, objectFile)


class DeleteImageFromDB(DeleteImageFile):
    name = "deleteimagefromdb"
    usage = "--deleteimagefromdb:file  Delete given file from db only"
    files = False


class DeletePatient(_Delete):
    name = "deletepatient"
    usage = "--deletepatient:patid  Delete given patient from server (also --deletpatient)"

    def keys(self, arguments):
        return [patientKey(arguments)]


class DeleteStudy(_Delete):
    name = "deletestudy"
    usage = "--deletestudy:patid:studyuid  Delete given study from server"

    def keys(self, arguments):
        return patientAndUID(arguments, STUDY_INSTANCE_UID, "study UID")


class DeleteStudies(_Delete):
    name = "deletestudies"
    usage = "--deletestudies:date(range)  Delete studies from server on date"

    def keys(self, arguments):
        return [QueryKey(STUDY_DATE, "DA", studyDates(arguments))]


class DeleteSeries(_Delete):
    name = "deleteseries"
    usage = "--deleteseries:patid:seriesuid  Delete given series from server"

    def keys(self, arguments):
        return patientAndUID(arguments, SERIES_INSTANCE_UID, "series UID")


class DeleteImage(_Delete):
    name = "deleteimage"
    usage = "--deleteimage:patid:sopuid  Delete given image from server, patid: optional"

    def keys(self, arguments):
        return patientAndUID(arguments, SOP_INSTANCE_UID, "SOP instance UID")


class DeleteSopFromDB(_Delete):
    name = "deletesopfromdb"
    usage = "--deletesopfromdb:pat,study,series,sop  Delete specified image from db only"
    files = False

    def keys(self, arguments):
        patientID, study, series, sop = fields(arguments, 4)
        keys = [uidKey(SOP_INSTANCE_UID, sop, "SOP instance UID")]
        for tag, value, what in ((STUDY_INSTANCE_UID, study, "study UID"),
                                 (SERIES_INSTANCE_UID, series, "series UID")):
            if value.strip():
                keys.append(uidKey(tag, value, what))
        if patientID.strip():
            keys.append(patientKey(patientID))
        return keys


class DeletePatientFromDB(DeletePatient):
    name = "deletepatientfromdb"
    usage = "--deletepatientfromdb:patid  Delete given patient from db only (dgate -fp)"
    files = False


class DeleteStudyFromDB(DeleteStudy):
    name = "deletestudyfromdb"
    usage = "--deletestudyfromdb:patid:studyuid  Delete given study from db only, patid: optional (-ft)"
    files = False


class DeleteSeriesFromDB(DeleteSeries):
    name = "deleteseriesfromdb"
    usage = "--deleteseriesfromdb:patid:seriesuid  Delete given series from db only, patid: optional (-fs)"
    files = False
