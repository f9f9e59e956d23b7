"""Whole studies and series as zip files (Conquest's ``zipstudy`` and
``zipseries`` modes: ``study`` / ``series`` = patid:uid): the stored files,
named as on the MAG device, zipped (deflated) into a temporary file in the
I/O pool and sent from there without holding it in memory."""

import os
import tempfile
import zipfile

from pacscore.db.query import PATIENT_ID, SERIES_INSTANCE_UID, STUDY_INSTANCE_UID, QueryKey
from pacscore.web.answers import FileAnswer, WebError
from pacscore.web.objects import uid

ZIP = "application/zip"


def _zipped(paths, names):
    """In the I/O pool: an open temporary file holding the zip of ``paths``."""
    archiveFile = tempfile.TemporaryFile(prefix="pacs-zip-")
    with zipfile.ZipFile(archiveFile, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zipped:
        for path, name in zip(paths, names):
            zipped.write(path, name)
    archiveFile.seek(0)
    return archiveFile


async def _zipAnswer(archive, level, tag, parameter, parameters):
    patientID, _, value = parameters.get(parameter).strip().rpartition(":")
    keys = [QueryKey(tag, "UI", uid(value, f"the {parameter} UID"))]
    if patientID:
        keys.append(QueryKey(PATIENT_ID, "LO", patientID.replace("*", "").replace("?", "")))
    instances = await archive.index.runQuery(archive.query.instances, level, keys)
    if not instances:
        raise WebError(404, f"no stored {parameter} {value}")
    paths = [archive.objectReader.path(i.deviceName, i.objectFile) for i in instances]
    names = [i.objectFile for i in instances]
    try:
        archiveFile = await archive.workers.deferToWorker(_zipped, paths, names)
    except OSError as e:
        raise WebError(404 if isinstance(e, FileNotFoundError) else 500,
                       f"a stored file cannot be read: {e.strerror or e}") from e
    size = os.fstat(archiveFile.fileno()).st_size
    return FileAnswer(archiveFile, size, ZIP, (("Content-Disposition", f"attachment; filename=\"{value}.zip\""),))


async def zipStudy(archive, parameters):
    return await _zipAnswer(archive, "STUDY", STUDY_INSTANCE_UID, "study", parameters)


async def zipSeries(archive, parameters):
    return await _zipAnswer(archive, "SERIES", SERIES_INSTANCE_UID, "series", parameters)


MODES = {
    "zipstudy": zipStudy,
    "zipseries": zipSeries,
}
