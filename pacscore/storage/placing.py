"""Giving a written file its name on a MAG device, never over the file of
another SOP instance: a FileNameSyntax that names two instances alike (mode
0, a template without ``%sopuid``) gets ``_1``, ``_2`` ... before the
extension.  Used by stores and by moves between devices (blocking)."""

import os

from pacscore.storage.attributes import DatasetError
from pacscore.storage.filenames import fitPath
from pacscore.storage.part10 import readFileAttributes

SOP_INSTANCE_UID = 0x00080018
MAX_NAME_SUFFIX = 1000  # numbered names tried when FileNameSyntax names another instance's file


def placeFile(temporary, device, relative, sopInstanceUID, makeFolders, folderChanged, keepSource=False):
    """Give the written file ``temporary`` the name ``relative`` on
    ``device``, replacing a file there only when it holds the same SOP
    instance, else the first numbered name free or holding it; the name
    given, or None when ``MAX_NAME_SUFFIX`` numbered names hold others.
    ``makeFolders`` and ``folderChanged`` (a folder path): what makes a new
    folder and a changed one durable.  ``sopInstanceUID`` None: only a
    free name is taken.  ``keepSource``: ``temporary`` keeps its name too
    (where the file system has hard links), for the caller to remove."""
    for name in numberedNames(relative):
        target = device.absolute(name)
        if _claim(temporary, target, makeFolders, keepSource=keepSource) or (
                sopInstanceUID is not None and _holds(target, sopInstanceUID, temporary)):
            folderChanged(os.path.dirname(target))
            return name
    return None


def numberedNames(relative):
    """The names ``placeFile`` tries, in order: ``relative``, then
    ``base_1.ext`` up to ``base_{MAX_NAME_SUFFIX}.ext``, each cut to the
    index's ObjectFile column as FileNameSyntax names are (``fitPath``)."""
    yield relative
    base, extension = os.path.splitext(relative)
    for attempt in range(1, MAX_NAME_SUFFIX + 1):
        yield fitPath(f"{base}_{attempt}{extension}")


def _claim(temporary, target, makeFolders, newFolder=False, keepSource=False):
    """Link ``temporary`` as ``target`` unless that name exists (a new
    folder made as needed), then remove its name unless ``keepSource``:
    whether it was free."""
    try:
        os.link(temporary, target)
    except FileNotFoundError:  # a new folder; existing ones cost no extra system call
        if newFolder:
            raise
        makeFolders(os.path.dirname(target))
        return _claim(temporary, target, makeFolders, newFolder=True, keepSource=keepSource)
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links: a check, then a rename
        if os.path.lexists(target):
            return False
        os.replace(temporary, target)
        return True
    if not keepSource:
        os.unlink(temporary)
    return True


def _holds(target, sopInstanceUID, temporary):
    """Replace ``target`` with ``temporary`` if it is a copy of SOP
    instance ``sopInstanceUID``: whether it was (a file that cannot be
    read as DICOM is kept too)."""
    if not holdsInstance(target, sopInstanceUID):
        return False
    os.replace(temporary, target)
    return True


def holdsInstance(path, sopInstanceUID):
    """Whether the file at ``path`` is there and holds SOP instance
    ``sopInstanceUID`` (not when it cannot be read as DICOM)."""
    return heldInstance(path) == sopInstanceUID


def heldInstance(path):
    """The SOP Instance UID the file at ``path`` holds, or None when it is
    not there or cannot be read as DICOM."""
    try:
        return readFileAttributes(path, (SOP_INSTANCE_UID,))[1].get(SOP_INSTANCE_UID)
    except (DatasetError, OSError):
        return None
