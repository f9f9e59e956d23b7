"""``dgate --addimagefile:`` of a folder (Conquest's drag and drop of a
folder, a CD's): every file under it, walked in the I/O pool (links to
folders followed, each folder once), stored as
one file given alone is, ``CONCURRENCY`` at a time when each is copied
into its spool a chunk at a time, one at a time when each is read whole
(to be changed for a new patient), so memory stays bounded; files of HL7
messages (told by their first bytes, ``isHL7``) are applied to the
worklist (as Conquest's drag and drop applies them) before the objects,
so that WorkListMode finds the folder's own orders, one at a time in the
order the folder is walked (``folderFiles``), with a line each;
DICOMDIR, and other files that are no DICOM object (a zip file among them),
are skipped with a line each, a file the store refuses (or an HL7 file
with a message not accepted) fails with a line, and a summary line ends
the answer; a file its taker leaves for a later run (``LeftForLater``:
``loadanddeletedir``'s file still being written) is skipped with a line.
The archive's own folders (``output.ownFolders``: its MAG and
mirror devices ...) are never imported again: one named is refused, one
under the folder named skipped with a line, as is a link to a file in one."""

import os

from twisted.internet import defer

from pacscore.control.context import CommandError, NotDICOM
from pacscore.control.output import inFolders, ownFolders
from pacscore.hl7.message import HL7_HEAD, isHL7
from pacscore.storage.regularfiles import SkippedFiles, hidden, isRegularFile, openRegularFile

CONCURRENCY = 4
DICOMDIR_SKIPPED = "a DICOMDIR (the index of a CD), not an object"


OWN_FOLDER = "the archive's own folder (a MAG or mirror device, the HL7 drop folder, its scripts)"
OWN_FILE = f"a file in {OWN_FOLDER}"


class LeftForLater(CommandError):
    """A file of a folder not taken in now but left as it is for a later
    run (``why``), counted as skipped."""

    def __init__(self, path, why):
        super().__init__(f"{path}: {why}")
        self.why = why


def folderFiles(folder, skip=SkippedFiles(), own=frozenset()):
    """In the I/O pool: ``(files, unreadable, owned)``: ``(path, whether it
    is a regular file)`` of the files under ``folder`` in the order walked
    (each folder's by name, before its subfolders', by name too), its
    subfolders walked too but hidden ones (a device's ``.pacs-tmp``, as
    regen) and those whose real path is in ``own``, links to files in
    them too (``(path, why)`` of those in ``owned``),
    links to folders followed (a CD copy's), each
    folder once (so a link loop ends), the files in ``skip`` (a
    ``SkippedFiles`` of the index database's) left out; ``(path, why)`` of the
    folders that could not be listed.  CommandError when ``folder`` is in
    one of ``own``."""
    if inFolders(folder, own):
        raise CommandError(f"{folder} is {OWN_FOLDER}: not a folder to import")
    found, unreadable, owned = [], [], []
    visited = set()

    def walked(path):
        if inFolders(path, own):
            owned.append((path, OWN_FOLDER))
            return False
        return firstVisit(path)

    def firstVisit(path):
        try:
            status = os.stat(path)
        except OSError:
            return True  # the walk names why it cannot list it
        identity = status.st_dev, status.st_ino
        if identity in visited:
            return False
        visited.add(identity)
        return True

    def cannotList(error):
        unreadable.append((error.filename, error.strerror or str(error)))

    firstVisit(folder)
    for root, folders, names in os.walk(folder, onerror=cannotList, followlinks=True):
        folders[:] = [name for name in sorted(folders) if not hidden(name) and walked(os.path.join(root, name))]
        for path in (os.path.join(root, name) for name in sorted(names)):
            if os.path.islink(path) and inFolders(path, own):  # the folders walked are none of own
                owned.append((path, OWN_FILE))
            elif path not in skip:
                try:
                    regular = isRegularFile(path)
                except OSError:  # a dangling link
                    regular = False
                found.append((path, regular))
    return found, unreadable, owned


def _readsAsHL7(path):
    """In the I/O pool: whether the regular file ``path`` starts HL7
    messages (``isHL7``)."""
    with openRegularFile(path) as f:
        return isHL7(f.read(HL7_HEAD))


async def isHL7File(archive, path):
    """Whether the file ``path`` holds HL7 messages (``isHL7``: its first
    bytes), read in the I/O pool; False when it cannot be read."""
    try:
        return await archive.workers.deferToWorker(_readsAsHL7, path)
    except OSError:
        return False


async def _outcome(store, path, regular):
    """``(kind, line)`` of storing the file ``path`` with ``store``: kind
    "stored", "skipped" or "failed", line None for a stored file."""
    if not regular:  # reported as skipped, not as failed (reading it would refuse it)
        return "skipped", f"skipped {path}: not a regular file"
    try:
        await store(path)
    except NotDICOM as e:
        return "skipped", f"skipped {path}: {e.what}"
    except LeftForLater as e:
        return "skipped", f"skipped {path}: {e.why}"
    except CommandError as e:
        return "failed", f"failed {path}: {e}"
    return "stored", None


async def _applied(applyHL7, path):
    """``(kind, line)`` of applying the HL7 file ``path`` with ``applyHL7``:
    kind "applied" or "failed"."""
    try:
        lines = await applyHL7(path)
    except LeftForLater as e:
        return "skipped", f"skipped {path}: {e.why}"
    except CommandError as e:
        return "failed", f"failed {path}: {e}"
    return "applied", f"applied {path} to the worklist: {len(lines)} HL7 message(s)"


async def importFolder(archive, folder, store, concurrency, applyHL7):
    """Apply the files of HL7 messages under ``folder`` with
    ``applyHL7(path)`` (a coroutine: the lines of their messages,
    CommandError when one was not accepted), in the order of
    ``folderFiles``, then store every other file with ``store(path)`` (a
    coroutine that stores one file, CommandError when it does not,
    LeftForLater when it leaves it for a later run),
    ``concurrency`` files at a time (the orders first, so that WorkListMode
    finds them); the lines of the files applied, skipped and failed and the
    summary, CommandError with them when one failed (the lines as its
    output, the summary as its message)."""
    files, unreadable, owned = await archive.workers.deferToWorker(
        lambda: folderFiles(folder, SkippedFiles(archive.databaseFiles), ownFolders(archive)))
    semaphore = defer.DeferredSemaphore(concurrency)
    isMessages = await defer.gatherResults(
        [semaphore.run(isHL7File, archive, path) if regular else defer.succeed(False) for path, regular in files],
        consumeErrors=True)
    messageFiles = [path for (path, _), messages in zip(files, isMessages) if messages]
    outcomes = [await _applied(applyHL7, path) for path in messageFiles]
    outcomes += await defer.gatherResults([semaphore.run(_outcome, store, path, regular)
                                           for (path, regular), messages in zip(files, isMessages) if not messages],
                                          consumeErrors=True)
    outcomes += [("failed", f"failed {path}: cannot list the folder: {why}") for path, why in unreadable]
    outcomes += [("skipped", f"skipped {path}: {why}") for path, why in owned]
    counts = {kind: sum(1 for outcome, _ in outcomes if outcome == kind)
              for kind in ("stored", "applied", "skipped", "failed")}
    lines = "\n".join(line for _, line in outcomes if line is not None)
    applied = f"{counts['applied']} HL7 file(s) applied, " if messageFiles else ""
    summary = (f"{folder}: {counts['stored']} stored, {applied}{counts['skipped']} skipped, "
               f"{counts['failed']} failed")
    if counts["failed"]:
        raise CommandError(summary, output=lines)
    return f"{lines}\n{summary}" if lines else summary
