"""Stored objects as the control commands name them.

A stored file is given as its path (absolute, or relative to the working
folder) on a MAG device, or as ``DEVICE:relative`` / Conquest's
``MAG0\\relative``; the index knows it by ``DeviceName`` and ``ObjectFile``.
A relative part leading out of its device (``..``, absolute) is refused.
A server given as empty, ``(local)``, Conquest's ``local`` (any case, unless
acrnema.map has a node of that name: then that node) or our own AE title is
this archive.
A file to read (``objectFile``) may be any file, a stored one named
``DEVICE:relative`` as listings print it, or Conquest's ``patid:sop``
(``|``, ``?`` or ``*`` for the colon; the patient ID may be empty): the
stored object with that SOP Instance UID.
"""

import os
import posixpath
import re

from sqlalchemy import and_, select

from pacscore.control.context import CommandError
from pacscore.control.output import inputPath
from pacscore.db.query import PATIENT_ID, SOP_INSTANCE_UID, QueryKey
from pacscore.dicom.uids import isUID

LOCAL = "(local)"
_DEVICE_PREFIX = re.compile(r"^([A-Za-z]+[0-9]+)[:\\/](.+)$")
_WILDCARDS = ("*", "?", "\\")
_OBJECT_REFERENCE = re.compile(r"^([^|?*:]*)[|?*:]([0-9.]+)$")


def isLocal(archive, ae):
    """True when ``ae`` names this archive (its AE title in any case, as
    acrnema.map looks AEs up)."""
    ae = ae.strip()
    if ae.lower() == "local":
        return not any(node.ae.lower() == "local" for node in archive.configuration.acrNemaMap.nodes)
    return ae in ("", LOCAL) or ae.lower() == archive.aeTitle.lower()


def storedName(deviceName, objectFile):
    """``MAG0:relative/path``: how listings name a stored file."""
    return f"{deviceName}:{objectFile}"


def storedFile(archive, text):
    """``(deviceName, objectFile)`` of a file named as the module docstring
    says; CommandError when it is on no MAG device."""
    text = text.strip()
    if not text:
        raise CommandError("no file given")
    named = _onDevice(archive, text)
    if named is not None:
        return named
    path = archive.configuration.resolvePath(text)
    for device in archive.devices:
        if path.startswith(device.path + os.sep):
            return device.name, os.path.relpath(path, device.path).replace(os.sep, "/")
    raise CommandError(f"{text} is not on a MAG device "
                       f"({', '.join(f'{d.name} = {d.path}' for d in archive.devices)})")


def _onDevice(archive, text):
    """``(deviceName, objectFile)`` of ``text`` given as ``DEVICE:relative``
    (or ``DEVICE\\relative``) on one of the archive's MAG devices; None
    when it names no device so."""
    match = _DEVICE_PREFIX.match(text)
    devices = {device.name.upper(): device for device in archive.devices}
    if match is None or match.group(1).upper() not in devices:
        return None
    device = devices[match.group(1).upper()]
    return device.name, _insideDevice(device, match.group(2))


def _insideDevice(device, relative):
    """``relative`` (``/`` or ``\\`` separated) normalised; CommandError
    when it names no file inside ``device`` (``..``, absolute)."""
    normalised = posixpath.normpath(relative.replace("\\", "/"))
    if posixpath.isabs(normalised) or normalised in (".", "..") or normalised.startswith("../"):
        raise CommandError(f"{relative!r} is not a file inside {device.name} ({device.path})")
    return normalised


async def objectFile(archive, text):
    """The path of a DICOM file to read named by ``text``: a stored file as
    listings name it (``DEVICE:relative``, never leading out of its
    device), another file (as ``output.inputPath``), or ``patid:sop``, the
    file of that stored object (its mirror copy when only that is left);
    CommandError when the index holds no such object or ``text`` is empty
    (not the working folder)."""
    if not text.strip():
        raise CommandError("no file given")
    named = _onDevice(archive, text.strip())
    if named is not None:
        return inputPath(archive, archive.objectReader.magPath(*named))
    match = _OBJECT_REFERENCE.match(text.strip())
    if match is None or not isUID(match.group(2)) or os.path.exists(archive.configuration.resolvePath(text)):
        return inputPath(archive, text)
    patientID, uid = match.groups()
    keys = [QueryKey(SOP_INSTANCE_UID, "UI", uid)]
    if patientID.strip():
        keys.append(QueryKey(PATIENT_ID, "LO", exactValue(patientID, "patient ID")))
    found = await archive.index.runQuery(archive.objectReader.instancePaths, archive.query, "IMAGE", keys)
    if not found:
        raise CommandError(f"no stored object {uid}" + (f" of patient {patientID.strip()}" if patientID.strip() else ""))
    return found[0][1]


def fileInstances(connection, query, deviceName, objectFile):
    """In a reader thread: the ``Instance``s indexed with that file."""
    image = query.tables[3]
    columns = image.table.c
    sops = connection.execute(select(image.key).where(
        and_(columns.DeviceName == deviceName, columns.ObjectFile == objectFile))).scalars().all()
    if not sops:
        return []
    return query.instances(connection, "IMAGE", [QueryKey(SOP_INSTANCE_UID, "UI", "\\".join(sops))])


def exactValue(text, what):
    """``text`` stripped, refused when empty or holding wildcards, which
    would widen a delete or move to other patients."""
    text = text.strip()
    if not text:
        raise CommandError(f"no {what} given")
    if any(character in text for character in _WILDCARDS):
        raise CommandError(f"{what} {text!r}: wildcards are not allowed here")
    return text


def uidValue(text, what):
    """``exactValue`` of a UID, refused unless it is digits and dots."""
    uid = exactValue(text, what)
    if not isUID(uid):
        raise CommandError(f"{what} {uid!r} is not a UID (digits and dots, at most 64 characters)")
    return uid
