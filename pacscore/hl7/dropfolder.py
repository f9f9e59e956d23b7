"""The HL7 drop folder: files of HL7 messages put in a folder are applied.

Conquest imports HL7 files dropped on its GUI (``dgate -loadhl7:file``);
here a folder is watched instead (dicom.ini ``HL7DropFolder``, scanned every
``HL7DropFolderInterval`` seconds by a TimerService).  Each file may hold
several messages; they are applied in order like MLLP messages, then the
file moves to ``processed/`` when every message was accepted (AA) or to
``failed/`` otherwise, with a log line per file saying why; a message not
applied for a reason that is not its own (the database failing) leaves its
file where it is and stops the scan, so that file and the newer ones are
applied, in order, at the next scans.  The file is never written: how far
it got is kept in memory (``HeldFile``), so the next scans of the same
unchanged file start from that message and none is applied twice; a file
that changed (another inode, modification time or size) is a new file,
applied from its first message, unless it is the same inode whose first
messages are still those applied (a RIS appending to it): it goes on from
the first one not applied.  Segments appended to the last message applied
(no MSH before them) are logged and not applied: applying that message
again would undo what came after it (a cancel).  A file that changed while it was applied (a
RIS writing it in place) is not moved but logged and left for the next
scans, which so apply the messages it got meanwhile.  Such a file is logged once, its failure
logged and counted once by the intake (a new failure of it logged once
more), until it moves.  Files are
applied in the order they were last modified (names break ties), so an
order's cancel written after it runs after it whatever its name.  Files whose
name starts with a dot are left alone (write one, then rename it); a file is
taken once its size and modification time are the same in two scans in a
row (whatever its clock says), and one whose last segment has no end (CR,
LF or the MLLP end byte) waits ``UNTERMINATED_SCANS`` more scans for it;
files newer than one held back so wait with it.  A file that cannot be
moved after it was applied is never applied again (as long as it is
unchanged) and holds back none.  Files are read and cut into messages in
the I/O pool; one over ``HL7_FILE_LIMIT`` bytes goes to ``failed/`` unread.
A folder that goes away (a share no longer mounted) or cannot be listed
(a file in its place, a share back with the wrong permissions, a stale NFS
handle) is logged once, with the reason, and once when it can be listed
again.
"""

import errno
import os
from typing import NamedTuple

from twisted.internet import defer
from twisted.logger import Logger

from pacscore.hl7.intake import applyMessages
from pacscore.hl7.message import splitMessages

PROCESSED = "processed"
FAILED = "failed"
HL7_FILE_LIMIT = 64 << 20
UNTERMINATED_SCANS = 5
SEGMENT_ENDS = (b"\r", b"\n", b"\x1c")


class HeldFile(NamedTuple):
    """How far a file held back by a failure that may pass got."""

    identity: tuple  # (inode, mtime, size) of the file it was
    start: int  # the index of its first message not applied
    reason: str  # the failure that holds it, logged once (None: held because it changed while applied)
    refused: tuple  # "message n: code text" of its messages before ``start`` not accepted
    applied: tuple  # its raw messages before ``start``

    def goesOnIn(self, identity, messages):
        """Whether the file read as ``identity`` and ``messages`` is this
        one, as it was or grown (same inode, the same first messages, the
        last one applied perhaps with segments added: ``grown``): it goes
        on from ``start``; otherwise it is a new file."""
        if identity == self.identity:
            return True
        kept = tuple(messages[:self.start])
        return (identity is not None and identity[0] == self.identity[0] and len(kept) == self.start
                and (kept == self.applied or (kept[:-1] == self.applied[:-1]
                                              and kept[-1].startswith(self.applied[-1] + b"\r"))))

    def grown(self, messages):
        """Whether the last message applied got segments (``messages``, a
        file this one goes on in)."""
        return self.start > 0 and messages[self.start - 1] != self.applied[-1]


class DropFolder:
    """Applies the files of ``path`` through ``intake`` (a WorklistIntake);
    file I/O runs in ``workers`` (the archive's I/O pool)."""

    log = Logger()

    def __init__(self, path, intake, workers):
        self.path = path
        self.intake = intake
        self.workers = workers
        self._unchanged = {}     # name -> ((mtime, size), how many scans in a row saw that)
        self._unmovable = set()  # (name, mtime, size) of applied files that could not be moved
        self._held = {}  # name -> HeldFile of the files held back by a failure that may pass
        self._unlisted = None  # the errno of the last scan, which could not list the folder

    def prepare(self):
        """Create the folder and its two subfolders (synchronously, at start-up)."""
        for folder in (self.path, os.path.join(self.path, PROCESSED), os.path.join(self.path, FAILED)):
            os.makedirs(folder, exist_ok=True)

    @defer.inlineCallbacks
    def scan(self):
        """Apply the settled files of the folder, oldest first, up to the
        first one held back (still changing, waiting for its last segment's
        end, or held by a failure that may pass): newer files wait with it,
        so that they run after it.
        Fires when done and never fails (a TimerService would stop calling
        it)."""
        try:
            listing = yield self.workers.deferToWorker(_listFiles, self.path)
        except OSError as e:
            self._cannotList(e)
            return
        self._listed()
        for name, scans in self._filesInOrder(listing):
            if not scans:
                return
            try:
                outcomes = yield self.applyFile(name, scans)
            except Exception:
                self.log.failure("HL7 drop folder: {name} could not be processed", name=name)
            else:
                if outcomes is None:
                    return

    def _cannotList(self, error):
        """Log a scan that could not list the folder (``error``, an
        OSError), once while the scans fail for the same reason."""
        if self._unlisted == error.errno:
            return
        self._unlisted = error.errno
        if isinstance(error, FileNotFoundError):
            self.log.warn("HL7 drop folder {path} is not there (a share not mounted?): files dropped there are "
                          "taken once it is back", path=self.path)
        else:
            self.log.error("HL7 drop folder {path} cannot be listed ({error}): files dropped there are taken once "
                           "it can", path=self.path, error=error)

    def _listed(self):
        """Log that the folder can be listed again after scans that could
        not list it."""
        if self._unlisted is None:
            return
        again = "is there again" if self._unlisted == errno.ENOENT else "can be listed again"
        self._unlisted = None
        self.log.info("HL7 drop folder {path} {again}", path=self.path, again=again)

    def _filesInOrder(self, listing):
        """``(name, scans)`` of the files of ``listing`` (``(name, mtime,
        size)``), oldest first (names break ties), with the number of scans
        in a row before this one that saw them as they are (0: still
        changing); applied files that could not be moved are left out."""
        previous, self._unchanged = self._unchanged, {}
        files = []
        for name, modified, size in listing:
            state, scans = previous.get(name, (None, -1))
            scans = scans + 1 if state == (modified, size) else 0
            self._unchanged[name] = ((modified, size), scans)
            if (name, modified, size) not in self._unmovable:
                files.append((modified, name, scans))
        self._unmovable = {key for key in self._unmovable if key[0] in self._unchanged}
        self._held = {name: held for name, held in self._held.items() if name in self._unchanged}
        return [(name, scans) for _, name, scans in sorted(files)]

    @defer.inlineCallbacks
    def applyFile(self, name, scans=UNTERMINATED_SCANS):
        """Apply one file of the folder (from its first message not applied
        when it is held, ``HeldFile``) and move it; fires with the list of
        ``Outcome``s of the messages applied (None when the file, seen
        unchanged by ``scans`` scans, may not be complete yet, or one of its
        messages may be applied later (``Outcome.retry``): it is left as it
        is)."""
        path = os.path.join(self.path, name)
        try:
            messages, ended, identity = yield self.workers.deferToWorker(_readFile, path, scans < UNTERMINATED_SCANS)
        except OSError as e:
            if e.errno != errno.EFBIG:
                self.log.error("HL7 drop folder: cannot read {path}: {error}", path=path, error=e)
                return []
            messages, ended, tooLarge, identity = [], True, e.strerror, None
            state = self._unchanged.get(name, (None,))[0]
        else:
            tooLarge, state = None, identity[1:]
        if not ended:
            if scans < UNTERMINATED_SCANS:
                return None
            self.log.warn("HL7 drop folder: {name} has not changed for {scans} scans but its last segment "
                          "has no end (CR, LF): applied as it is", name=name, scans=scans)
        held = self._held.get(name)
        if held is None or not held.goesOnIn(identity, messages):
            held = HeldFile(identity, 0, None, (), ())
        elif held.grown(messages):
            self.log.warn("HL7 drop folder: {name}: message {number} got segments after it was applied: they are "
                          "not applied (the message is not applied again, which would undo what came after it); "
                          "send them in a message of their own", name=name, number=held.start)
        outcomes = yield applyMessages(self.intake, messages[held.start:], again=held.reason is not None)
        refused = held.refused + tuple(line for line, o in zip(outcomeLines(outcomes, held.start + 1), outcomes)
                                       if o.code != "AA" and not o.retry)
        if outcomes and outcomes[-1].retry:
            self._hold(name, held, messages, outcomes, refused)
            return None
        self._held.pop(name, None)
        if tooLarge:
            target, why = FAILED, tooLarge
        elif not messages:
            target, why = FAILED, "no HL7 message (no MSH segment) in the file"
        elif refused:
            target, why = FAILED, "; ".join(refused)
        else:
            target, why = PROCESSED, f"{len(messages)} message(s) applied"
        try:
            moved = yield self.workers.deferToWorker(_moveInto, path, os.path.join(self.path, target), identity)
        except OSError as e:
            if state is not None:
                self._unmovable.add((name, *state))
            self.log.error("HL7 drop folder: {name} ({why}) cannot be moved into {target}/: {error}; "
                           "it stays there and is not applied again until it changes",
                           name=name, why=why, target=target, error=e)
            return outcomes
        if moved is None:
            self._held[name] = HeldFile(identity, len(messages), None, refused, tuple(messages))
            self.log.warn("HL7 drop folder: {name} changed while its {count} message(s) were applied: it stays "
                          "for the next scans, which apply the messages it got meanwhile (none of those "
                          "{count} again unless it was written anew)", name=name, count=len(messages))
            return None
        log = self.log.info if target == PROCESSED else self.log.warn
        log("HL7 drop folder: {name} -> {moved}: {why}", name=name, moved=moved, why=why)
        return outcomes

    def _hold(self, name, held, messages, outcomes, refused):
        """Keep in memory that the file ``name`` (``held`` before this
        scan, its raw ``messages``) stopped at its last ``outcomes``
        (retry), ``refused`` those before it not accepted; log the ones
        newly refused, and the failure when it is new."""
        stop = held.start + len(outcomes)
        last = outcomes[-1]
        reason = f"{last.code} {last.text}" + (f" ({last.cause})" if last.cause else "")
        if refused[len(held.refused):]:
            self.log.warn("HL7 drop folder: {name}: {refused}; not applied again while it is unchanged",
                          name=name, refused="; ".join(refused[len(held.refused):]))
        if reason != held.reason:
            self.log.warn("HL7 drop folder: {name} stays for the next scan: message {number}: {reason}{kept}",
                          name=name, number=stop, reason=reason,
                          kept=f"; messages 1 to {stop - 1} are not applied again while it is unchanged"
                          if stop > 1 else "")
        self._held[name] = HeldFile(held.identity, stop - 1, reason, refused, tuple(messages[:stop - 1]))


def outcomeLines(outcomes, first=1):
    """``message N: CODE text`` of each Outcome of ``outcomes``, numbered
    from ``first``."""
    return [f"message {number}: {outcome.code} {outcome.text}" for number, outcome in enumerate(outcomes, first)]


def _readData(file):
    data = file.read(HL7_FILE_LIMIT + 1)
    if len(data) > HL7_FILE_LIMIT:
        raise OSError(errno.EFBIG, f"larger than {HL7_FILE_LIMIT >> 20} MB")
    return data


def readMessages(file):
    """In the I/O pool: the raw messages of an open HL7 file; OSError
    EFBIG when it holds over ``HL7_FILE_LIMIT`` bytes."""
    return splitMessages(_readData(file))


def _listFiles(path):
    """In the I/O pool: ``(name, mtime, size)`` of the files of the folder
    whose name does not start with a dot; FileNotFoundError when the
    folder is not there (not for a file gone since it was listed)."""
    listing = []
    with os.scandir(path) as entries:
        for entry in entries:
            if not entry.name.startswith(".") and entry.is_file():
                try:
                    status = entry.stat()
                except FileNotFoundError:
                    continue
                listing.append((entry.name, status.st_mtime_ns, status.st_size))
    return listing


def _readFile(path, mayWait):
    """In the I/O pool: ``(messages, whether the last segment has its end,
    (inode, mtime, size))`` of a drop folder file; no messages (not split
    for nothing) when it has no end and ``mayWait`` for it."""
    with open(path, "rb") as f:
        status = os.fstat(f.fileno())
        data = _readData(f)
    ended = data.rstrip(b" \t")[-1:] in SEGMENT_ENDS
    messages = splitMessages(data) if ended or not mayWait else []
    return messages, ended, (status.st_ino, status.st_mtime_ns, status.st_size)


def _moveInto(path, folder, identity=None):
    """Move ``path`` into ``folder`` (made when missing) without
    overwriting; the new path, or None (not moved) when it is no longer
    the file read as ``identity`` (inode, mtime, size)."""
    if identity is not None:
        status = os.stat(path)
        if (status.st_ino, status.st_mtime_ns, status.st_size) != identity:
            return None
    os.makedirs(folder, exist_ok=True)
    base = os.path.basename(path)
    target = os.path.join(folder, base)
    number = 1
    while os.path.exists(target):
        target = os.path.join(folder, f"{base}.{number}")
        number += 1
    os.replace(path, target)
    return target
