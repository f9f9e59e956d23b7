"""Spool files of the image forwards an export converter line queues after
it changed ``Data`` (Lua, ``set``, ``newuids`` ...): the changed whole
object, written to a hidden ``.pacs-export`` folder of the MAG device of
the stored object, is what the forward sends, as Conquest's export
converters forward the object they changed in memory (never the stored,
unchanged one: an anonymising line must not leak; when the file is gone
the forward is given up, never sent with the stored object).  The queue
deletes the file once its action is delivered and its row removed (a
given-up action keeps it for ``--retryforwards``); regen skips the folder
(hidden)."""

import os
import uuid

from twisted.logger import Logger

from pacscore.converters.saving import writePart10
from pacscore.storage.devices import fsyncDirectory, makeDirectories

SPOOL_FOLDER = ".pacs-export"

log = Logger()


def spoolFolder(deviceRoot):
    """The spool folder of the MAG device whose folder is ``deviceRoot``."""
    return os.path.join(deviceRoot, SPOOL_FOLDER)


def spoolObject(dataset, folder):
    """Write ``dataset`` as a Part-10 file of a new name in ``folder``,
    fsynced (the action that names it is committed after); its path."""
    makeDirectories(folder)
    path = os.path.join(folder, uuid.uuid4().hex + ".dcm")
    writePart10(dataset, path)
    with open(path, "rb") as f:
        os.fsync(f.fileno())
    fsyncDirectory(folder)
    return path


def isSpooled(path):
    """Whether ``path`` is a spool file (a forward sends it, not the index's object)."""
    return bool(path) and os.path.basename(os.path.dirname(path)) == SPOOL_FOLDER


def discard(paths):
    """Delete the spool files among ``paths`` (no other file) once their
    actions are over; one already gone is fine, another failure is logged."""
    for path in paths:
        if not isSpooled(path):
            continue
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            log.warn("the spool file {path} of a forward could not be deleted: {error}", path=path, error=e)
