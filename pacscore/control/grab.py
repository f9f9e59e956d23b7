"""``grabimagesfromserver:AE,date`` (dgate ``-gAE,date``, manual appendix 6,
"Communication options"): fetch from another archive what it holds of the
studies of a date (or a ``date-date``, ``-date`` or ``date-`` range, as
``deletes.studyDates`` takes it) and this archive does not.

The other archive (an AE of acrnema.map that knows ours) is asked with
C-FINDs, Study Root, down the levels: the studies of the date, their
series, their images; each series' SOP Instance UIDs are compared with the
index here.  A series missing entirely is C-MOVEd to us as a series, one
missing in part image by image (``MOVE_CHUNK`` SOP Instance UIDs per
C-MOVE), each C-MOVE on an association of its own (``Forwarder.get``).
The answer counts the objects missing and the sub-operations of the
C-MOVEs.
"""

from twisted.logger import Logger

from pacscore.control.arguments import AsyncControlCommand, fields
from pacscore.control.context import CommandError
from pacscore.control.deletes import STUDY_DATE, studyDates
from pacscore.control.finders import LocalIndex, RemoteArchive
from pacscore.control.moves import MoveCounts, forwarderFor
from pacscore.control.stored import isLocal
from pacscore.db.query import PATIENT_ID, SERIES_INSTANCE_UID, SOP_INSTANCE_UID, STUDY_INSTANCE_UID, QueryKey
from pacscore.export.forwarder import ForwardError
from pacscore.export.queue import Action, Target

MOVE_CHUNK = 100


def _key(tag, value=""):
    return QueryKey(tag, "LO" if tag == PATIENT_ID else "UI", value)


async def missingHere(remote, local, dates, progress):
    """``(Target, count)`` of each series the ``remote`` archive holds of
    studies on ``dates`` with objects the ``local`` index lacks: the
    Target's SOP Instance UID is empty when the whole series is missing,
    else a list of the missing ones."""
    missing = []
    studies = await remote.find("STUDY", [QueryKey(STUDY_DATE, "DA", dates), _key(PATIENT_ID),
                                          _key(STUDY_INSTANCE_UID)])
    for number, study in enumerate(studies, 1):
        patientID, studyUID = study[PATIENT_ID], study[STUDY_INSTANCE_UID]
        progress(f"study {number} of {len(studies)}: {studyUID}")
        for series in await remote.find("SERIES", [_key(STUDY_INSTANCE_UID, studyUID), _key(SERIES_INSTANCE_UID)]):
            seriesUID = series[SERIES_INSTANCE_UID]
            keys = [_key(STUDY_INSTANCE_UID, studyUID), _key(SERIES_INSTANCE_UID, seriesUID), _key(SOP_INSTANCE_UID)]
            there = {image[SOP_INSTANCE_UID] for image in await remote.find("IMAGE", keys)}
            here = {image[SOP_INSTANCE_UID] for image in await local.find("IMAGE", keys)}
            absent = sorted(there - here)
            if absent and len(absent) == len(there):
                missing.append((Target(patientID, studyUID, seriesUID), len(absent)))
                continue
            for start in range(0, len(absent), MOVE_CHUNK):
                chunk = absent[start:start + MOVE_CHUNK]
                missing.append((Target(patientID, studyUID, seriesUID, "\\".join(chunk)), len(chunk)))
    return missing


class GrabImagesFromServer(AsyncControlCommand):
    name = "grabimagesfromserver"
    usage = "--grabimagesfromserver:AE,date  Update this server from other (date or date-date)"
    log = Logger()

    async def execute(self, arguments, context):
        ae, dates = fields(arguments, 2)
        archive = context.archive
        if isLocal(archive, ae):
            raise CommandError("grabimagesfromserver needs another archive's AE title")
        dates = studyDates(dates)
        remote = await RemoteArchive.open(archive, ae.strip())
        try:
            missing = await missingHere(remote, LocalIndex(archive), dates, context.progress)
        finally:
            await remote.close()
        count = sum(number for _, number in missing)
        if not count:
            return f"nothing of {dates} on {ae} is missing here"
        counts = MoveCounts(context, archive.aeTitle)
        forwarder = forwarderFor(archive)
        try:
            for target, _ in missing:
                level = "IMAGE" if target.sopInstanceUID else "SERIES"
                await forwarder.get(Action(0, "get", ae.strip(), level, target, "", {}, 0), onResponse=counts.update)
        except ForwardError as e:
            raise CommandError(f"{counts.completed} of {count} missing object(s) moved, then: {e}") from e
        finally:
            await forwarder.closeAll()
        self.log.info("{peer}: grabimagesfromserver {ae},{dates}: {count} missing, {completed} moved",
                      peer=context.peer, ae=ae, dates=dates, count=count, completed=counts.completed)
        return (f"{count} object(s) of {dates} on {ae} missing here: {counts.completed} moved "
                f"({counts.failed} failed, {counts.warning} warning(s)) in {len(missing)} C-MOVE(s)")
