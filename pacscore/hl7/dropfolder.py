"""The HL7 drop folder: files of HL7 messages put in a folder are applied.

Conquest imports HL7 files dropped on its GUI (``dgate -loadhl7:file``);
here a folder is watched instead (dicom.ini ``HL7DropFolder``, scanned every
``HL7DropFolderInterval`` seconds by a TimerService).  Each file may hold
several messages; they are applied in order like MLLP messages, then the
file moves to ``processed/`` when every message was accepted (AA) or to
``failed/`` otherwise, with a log line per file saying why; a message not
applied for a reason that is not its own (the database failing) leaves its
file where it is and stops the scan, so that file and the newer ones are
applied, in order, at the next scans; the file is first written anew with
only that message and those after it (the ones before it refused go to
``failed/``), so that none is applied twice.  Such a file is logged once,
its failure logged and counted once by the intake, until it moves.  Files are
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

from twisted.internet import defer
from twisted.logger import Logger

from pacscore.hl7.message import splitMessages
from pacscore.storage.devices import fsyncDirectory, removeFile

PROCESSED = "processed"
FAILED = "failed"
HL7_FILE_LIMIT = 64 << 20
UNTERMINATED_SCANS = 5
SEGMENT_ENDS = (b"\r", b"\n", b"\x1c")


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
        self._held = set()  # names of the files held back by a failure that may pass, logged once
        self._unlisted = None  # the errno of the last scan, which could not list the folder

    def prepare(self):
        """Create the folder and its two subfolders (synchronously, at start-up)."""
        for folder in (self.path, os.path.join(self.path, PROCESSED), os.path.join(self.path, FAILED)):
            os.makedirs(folder, exist_ok=True)

    @defer.inlineCallbacks
    def scan(self):
        """Apply the settled files of the folder, oldest first, up to the
        first one held back (still changing or waiting for its last
        segment's end): newer files wait with it, so that they run after it.
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
        self._held &= self._unchanged.keys()
        return [(name, scans) for _, name, scans in sorted(files)]

    @defer.inlineCallbacks
    def applyFile(self, name, scans=UNTERMINATED_SCANS):
        """Apply one file of the folder and move it; fires with the list
        of ``Outcome``s of its messages (None when the file, seen unchanged
        by ``scans`` scans, may not be complete yet, or one of its messages
        may be applied later (``Outcome.retry``): it is left as it is)."""
        path = os.path.join(self.path, name)
        try:
            messages, ended, state = yield self.workers.deferToWorker(_readFile, path, scans < UNTERMINATED_SCANS)
        except OSError as e:
            if e.errno != errno.EFBIG:
                self.log.error("HL7 drop folder: cannot read {path}: {error}", path=path, error=e)
                return []
            messages, ended, tooLarge = [], True, e.strerror
            state = self._unchanged.get(name, (None,))[0]
        else:
            tooLarge = None
        if not ended:
            if scans < UNTERMINATED_SCANS:
                return None
            self.log.warn("HL7 drop folder: {name} has not changed for {scans} scans but its last segment "
                          "has no end (CR, LF): applied as it is", name=name, scans=scans)
        outcomes = yield applyMessages(self.intake, messages, again=name in self._held)
        failed = [o for o in outcomes if o.code != "AA"]
        if failed and failed[-1].retry:
            if name not in self._held:
                self._held.add(name)
                self.log.warn("HL7 drop folder: {name} stays for the next scan: message {number}: {code} {text}",
                              name=name, number=len(outcomes), code=failed[-1].code, text=failed[-1].text)
            if len(outcomes) > 1:
                yield self._keepRest(name, messages, outcomes, state, scans)
            return None
        self._held.discard(name)
        if tooLarge:
            target, why = FAILED, tooLarge
        elif not outcomes:
            target, why = FAILED, "no HL7 message (no MSH segment) in the file"
        elif failed:
            target = FAILED
            why = "; ".join(f"message {outcomes.index(o) + 1}: {o.code} {o.text}" for o in failed)
        else:
            target, why = PROCESSED, f"{len(outcomes)} message(s) applied"
        try:
            moved = yield self.workers.deferToWorker(_moveInto, path, os.path.join(self.path, target))
        except OSError as e:
            if state is not None:
                self._unmovable.add((name, *state))
            self.log.error("HL7 drop folder: {name} ({why}) cannot be moved into {target}/: {error}; "
                           "it stays there and is not applied again until it changes",
                           name=name, why=why, target=target, error=e)
            return outcomes
        log = self.log.info if target == PROCESSED else self.log.warn
        log("HL7 drop folder: {name} -> {moved}: {why}", name=name, moved=moved, why=why)
        return outcomes

    @defer.inlineCallbacks
    def _keepRest(self, name, messages, outcomes, state, scans):
        """After the file ``name`` (seen in ``state``) stopped at its last
        ``outcomes`` (retry): write it anew with only the messages from
        that one on, so that the next scans do not apply those before it
        again, the ones refused of those into ``failed/``."""
        stop = len(outcomes) - 1
        refused = [(number, raw, outcome) for number, (raw, outcome) in enumerate(zip(messages, outcomes), 1)
                   if outcome.code != "AA"]
        try:
            kept = yield self.workers.deferToWorker(
                _keepMessages, os.path.join(self.path, name), state, messages[stop:],
                [raw for _, raw, _ in refused[:-1]], os.path.join(self.path, FAILED))
        except OSError as e:
            self.log.error("HL7 drop folder: {name} cannot be written without its {stop} message(s) applied or "
                           "refused ({error}): the next scan applies them again", name=name, stop=stop, error=e)
            return
        if kept is None:
            return  # changed since it was read: taken as it is now when it settles
        newState, moved = kept
        self._unchanged[name] = (newState, scans)
        why = "; ".join(f"message {number}: {outcome.code} {outcome.text}" for number, _, outcome in refused[:-1])
        self.log.info("HL7 drop folder: {name} now holds message {first} on, messages 1 to {stop} taken out of it"
                      "{refusedOnes}", name=name, first=stop + 1, stop=stop,
                      refusedOnes=f" (the refused ones -> {moved}: {why})" if moved else "")


@defer.inlineCallbacks
def applyMessages(intake, messages, again=False):
    """Apply raw messages in order; fires with their Outcomes, up to the
    first one that may be applied later (``Outcome.retry``): the messages
    after it are not applied before it (``again``: see
    ``WorklistIntake.process``)."""
    outcomes = []
    for raw in messages:
        outcome = yield intake.process(raw, again=again)
        outcomes.append(outcome)
        if outcome.retry:
            break
    return outcomes


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
    (mtime, size))`` of a drop folder file; no messages (not split for
    nothing) when it has no end and ``mayWait`` for it."""
    with open(path, "rb") as f:
        status = os.fstat(f.fileno())
        data = _readData(f)
    ended = data.rstrip(b" \t")[-1:] in SEGMENT_ENDS
    messages = splitMessages(data) if ended or not mayWait else []
    return messages, ended, (status.st_mtime_ns, status.st_size)


def _keepMessages(path, state, messages, refused, failedFolder):
    """In the I/O pool: replace the drop folder file ``path``, unless it
    changed since ``state``, by one of ``messages`` only, atomically (a
    dot file of the same folder synced, then renamed over it) and with its
    modification time (its place in the order), after writing ``refused``
    (if any) into ``failedFolder`` under its name; ``((mtime, size), the
    path of the refused ones or None)``, or None when it changed."""
    status = os.stat(path)
    if (status.st_mtime_ns, status.st_size) != state:
        return None
    folder, base = os.path.split(path)
    moved = None
    if refused:
        moved = _moveInto(_writeSynced(os.path.join(folder, f".{base}.refused"), refused), failedFolder, base)
    temporary = _writeSynced(os.path.join(folder, f".{base}.rest"), messages)
    os.utime(temporary, ns=(status.st_atime_ns, status.st_mtime_ns))
    os.replace(temporary, path)
    fsyncDirectory(folder)
    return (status.st_mtime_ns, os.stat(path).st_size), moved


def _writeSynced(path, messages):
    """In the I/O pool: ``path``, written with ``messages`` (a segment a
    line) and synced to disk; removed when that fails."""
    try:
        with open(path, "wb") as f:
            f.write(b"".join(raw.replace(b"\r", b"\n") + b"\n" for raw in messages))
            f.flush()
            os.fsync(f.fileno())
    except OSError:
        removeFile(path)
        raise
    return path


def _moveInto(path, folder, base=None):
    """Move ``path`` into ``folder`` (made when missing) as ``base`` (its
    own name by default) without overwriting; the new path."""
    os.makedirs(folder, exist_ok=True)
    base = base or os.path.basename(path)
    target = os.path.join(folder, base)
    number = 1
    while os.path.exists(target):
        target = os.path.join(folder, f"{base}.{number}")
        number += 1
    os.replace(path, target)
    return target
