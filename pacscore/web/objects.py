"""Stored objects named by a web request: ``slice=PatientID:SOPInstanceUID``
as Conquest's pages name them, or WADO's study, series and object UIDs;
and the work done on their files in the I/O pool, its failures made
``WebError``s."""

import errno

from pydicom.errors import InvalidDicomError
from twisted.logger import Logger

from pacscore.codecs.rendering import FrameOutOfRange, RegionOutsideFrame
from pacscore.codecs.transcode import TranscodeError
from pacscore.db.query import EXACT, PATIENT_ID, SERIES_INSTANCE_UID, SOP_INSTANCE_UID, STUDY_INSTANCE_UID, QueryKey
from pacscore.dicom.datasets import IdentifierError
from pacscore.dicom.uids import isUID
from pacscore.storage.attributes import DatasetError
from pacscore.storage.part10 import Damaged
from pacscore.web.answers import WebError

log = Logger()


def uid(text, what):
    """``text`` stripped, a UID; WebError 400 otherwise."""
    text = text.strip()
    if not isUID(text):
        raise WebError(400, f"{what} must be a UID, not {text!r}")
    return text


def entityReference(parameters, name):
    """``(patientID, uid)`` of Conquest's ``patid:uid`` parameter ``name``
    (``series``, ``study``; the patient ID may be missing)."""
    patientID, _, value = parameters.get(name).strip().rpartition(":")
    return patientID, uid(value, f"the {name} UID")


def entityKeys(parameters, name, tag):
    """The query keys of the ``patid:uid`` parameter ``name``: ``tag``
    (the UID of its level) and, when given, the Patient ID."""
    patientID, value = entityReference(parameters, name)
    keys = [QueryKey(tag, "UI", value)]
    if patientID:
        keys.append(QueryKey(PATIENT_ID, EXACT, patientID))  # as written: "A*3" is a Patient ID
    return keys


def sliceReference(text):
    """``(patientID, sopInstanceUID)`` of Conquest's ``patid:sop`` (the
    patient ID may be missing)."""
    patientID, _, sop = text.strip().rpartition(":")
    return patientID, uid(sop, "the slice's SOP Instance UID")


async def storedPath(archive, sop, patientID="", series="", study=""):
    """The file of the stored object ``sop`` (of that patient, series and
    study when given); WebError 404 when the index holds none."""
    keys = [QueryKey(SOP_INSTANCE_UID, "UI", sop)]
    for tag, vr, value in ((PATIENT_ID, "LO", patientID), (SERIES_INSTANCE_UID, "UI", series),
                           (STUDY_INSTANCE_UID, "UI", study)):
        if value:
            keys.append(QueryKey(tag, vr, value.replace("\\", "")))
    found = await archive.index.runQuery(archive.objectReader.instancePaths, archive.query, "IMAGE", keys)
    if not found:
        raise WebError(404, f"no stored object {sop}")
    return found[0][1]


class Unreadable(WebError):
    """The stored file cannot be read: a 404 when it is gone, else a 500
    (an I/O error, a file cut short or damaged)."""


class CannotShow(WebError):
    """A 422: the stored object cannot be read or shown (as asked)."""

    def __init__(self, message):
        super().__init__(422, message)


class MissingFrame(CannotShow):
    """A 422: the object has ``frames`` frames, none numbered ``frame``
    (from 0), named as the request counts its frames, from ``first``."""

    def __init__(self, frames, frame, first):
        super().__init__(f"the object has {frames} frame(s), numbered from {first}: there is no frame {frame + first}")


async def onFile(archive, path, work, *args, firstFrame=1):
    """``work(path, *args)`` in the I/O pool: ``onCurrentFile`` without the path."""
    return (await onCurrentFile(archive, path, work, *args, firstFrame=firstFrame))[1]


async def onCurrentFile(archive, path, work, *args, firstFrame=1):
    """``(path, work(path, *args))``, the work done in the I/O pool; when
    the object was stored again since the index named ``path`` (an
    ``IndexedPath``), and its file is gone, on the file it names now, and
    that path (``ObjectReader.onFile``).  A file that is gone is
    Unreadable, a 404, one that cannot be read (an I/O error, cut short or
    damaged: Damaged, as ``ObjectReader.intact`` finds it) Unreadable, a
    500; one that cannot be shown a 422, CannotShow (the path goes to the
    log only), one without the frame asked for MissingFrame, the frame
    named as counted from ``firstFrame``, a region beyond the frame a 400."""
    return await shownFrom(path, archive.workers.deferToWorker(archive.objectReader.onFile, path, work, *args),
                           firstFrame)


async def shownFrom(path, working, firstFrame=1):
    """What the Deferred ``working``, work on the stored file ``path`` in
    the I/O pool, fires with; its failures made WebErrors as
    ``onCurrentFile`` makes them."""
    try:
        return await working
    except OSError as e:
        raise _unreadable(path, 404 if e.errno == errno.ENOENT else 500, e.strerror or e) from e
    except Damaged as e:
        raise _unreadable(path, 500, e) from e
    except FrameOutOfRange as e:
        raise MissingFrame(e.frames, e.frame, firstFrame) from e
    except RegionOutsideFrame as e:  # what the request asks for, not the object: a 400
        raise WebError(400, f"the region asked for is not in the image: {e}") from e
    except (DatasetError, IdentifierError, InvalidDicomError, TranscodeError, ValueError,
            NotImplementedError, RuntimeError) as e:  # the last two: pixel data pydicom cannot decode
        log.info("web: {path} cannot be shown: {error}", path=path, error=e)
        raise CannotShow(f"the stored object cannot be shown: {e}") from e


def _unreadable(path, code, error):
    """The Unreadable of the file ``path`` that cannot be read for ``error``, logged."""
    log.warn("web: cannot read {path}: {error}", path=path, error=error)
    return Unreadable(code, f"the stored file cannot be read: {error}")
