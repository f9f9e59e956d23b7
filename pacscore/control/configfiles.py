"""Saving and re-reading the configuration files of a running server
(dicom.ini, acrnema.map, dgatesop.lst) for the control commands.

The text to save is taken in the reactor thread, where the commands edit
the files' objects; the disk work runs in the archive's I/O pool.  A file
read again replaces the contents of the object the services already hold
(``MoveService`` and the forwarder keep the AcrNemaMap, the converters the
DicomIni), so they see it at once.  A command whose save fails changes
nothing: the object is put back as it was before its edit
(``saveOrRestore``); dicom.ini is not written from memory but edited on
disk (``saveEdit``), so its lines edited by hand since it was read stay.
A file that cannot be read again is warned of: the server then runs with
another file than the one on disk.
"""

import collections
import copy

from twisted.internet import defer
from twisted.logger import Logger

from pacscore.config.errors import ConfigError
from pacscore.config.textfile import writeFileAtomically
from pacscore.control.context import CommandError


log = Logger()
_fileLocks = collections.defaultdict(defer.DeferredLock)
"""Per path: saves and re-reads of one file run one at a time, in the order asked."""


def save(archive, lineFile):
    """Write ``lineFile`` where it was read, comments kept; a Deferred."""
    d = _fileLocks[lineFile.path].run(archive.workers.deferToWorker, writeFileAtomically, lineFile.path,
                                    lineFile.toString(), lineFile.encoding)
    d.addErrback(_refuse, f"cannot write {lineFile.path}")
    return d


def saveEdit(archive, lineFile, edit, check):
    """Make ``edit`` (a function of a file object of ``lineFile``'s kind) in
    the file as it is on disk now, not as ``lineFile`` holds it, so that
    the lines edited by hand since it was read stay as they are; ``check``,
    a function of the edited file, refuses it by raising.  A Deferred of
    what ``check`` returned, once the file is written."""

    def work():
        onDisk = type(lineFile).fromFile(lineFile.path)
        edit(onDisk)
        checked = check(onDisk)
        onDisk.write()
        return checked

    d = _fileLocks[lineFile.path].run(archive.workers.deferToWorker, work)
    d.addErrback(_refuse, f"cannot write {lineFile.path}")
    return d


def saveOrRestore(archive, lineFile, before, restored=None):
    """``save`` ``lineFile`` edited from ``before`` (its ``copy.deepcopy``
    taken before the edit); when that fails, ``lineFile`` is ``before``
    again (``restore``) and ``restored()`` is called, the failure passed on."""

    def undo(failure):
        restore(lineFile, before)
        if restored is not None:
            restored()
        return failure

    return save(archive, lineFile).addErrback(undo)


def restore(lineFile, other):
    """Make ``lineFile``, the object the services hold, have the contents of ``other``."""
    vars(lineFile).update(vars(other))
    return lineFile


def snapshot(lineFile):
    """A deep copy of ``lineFile`` (to ``restore`` after an edit that
    fails, or to try an edit on)."""
    return copy.deepcopy(lineFile)


def reload(archive, lineFile, check=None):
    """Read ``lineFile`` from disk again, in place; a Deferred of ``lineFile``.
    A file that no longer parses leaves the one in memory as it was, and
    so does one ``check`` (given the file read, in the same worker) refuses
    by raising (ConfigError or CommandError); with a ``check``, the Deferred
    fires with what it returned."""

    def read(path):
        fresh = type(lineFile).fromFile(path)
        return fresh, None if check is None else check(fresh)

    def use(read):
        fresh, checked = read
        restore(lineFile, fresh)
        return lineFile if check is None else checked

    d = _fileLocks[lineFile.path].run(archive.workers.deferToWorker, read, lineFile.path)
    d.addCallbacks(use, _refuse, errbackArgs=(f"cannot re-read {lineFile.path}",))
    d.addErrback(_notReread, lineFile.path)
    return d


def _notReread(failure, path):
    """Warn that the server runs with another ``path`` than the one on disk."""
    log.warn("{path} not read again, the server keeps the one it read before: {error}", path=path,
             error=failure.value)
    return failure


def _refuse(failure, what):
    failure.trap(ConfigError, OSError)
    raise CommandError(f"{what}: {failure.value}")
