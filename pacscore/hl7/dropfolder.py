"""The HL7 drop folder: files of HL7 messages put in a folder are applied.

Conquest imports HL7 files dropped on its GUI (``dgate -loadhl7:file``);
here a folder is watched instead (dicom.ini ``HL7DropFolder``, scanned every
``HL7DropFolderInterval`` seconds by a TimerService).  Each file may hold
several messages; they are applied in order like MLLP messages, then the
file moves to ``processed/`` when every message was accepted (AA) or to
``failed/`` otherwise, with a log line per file saying why.  Files are
applied in the order they were last modified (names break ties), so an
order's cancel written after it runs after it whatever its name.  Files whose
name starts with a dot or that changed in the last second (still being
written) wait for the next scan.  Files are read and cut into messages in
the I/O pool; one over ``HL7_FILE_LIMIT`` bytes goes to ``failed/`` unread.
"""

import errno
import os
import time

from twisted.internet import defer
from twisted.logger import Logger

from pacscore.hl7.message import splitMessages

PROCESSED = "processed"
FAILED = "failed"
SETTLE_SECONDS = 1.0
HL7_FILE_LIMIT = 64 << 20


class DropFolder:
    """Applies the files of ``path`` through ``intake`` (a WorklistIntake);
    file I/O runs in ``workers`` (the archive's I/O pool)."""

    log = Logger()

    def __init__(self, path, intake, workers, now=time.time):
        self.path = path
        self.intake = intake
        self.workers = workers
        self.now = now

    def prepare(self):
        """Create the folder and its two subfolders (synchronously, at start-up)."""
        for folder in (self.path, os.path.join(self.path, PROCESSED), os.path.join(self.path, FAILED)):
            os.makedirs(folder, exist_ok=True)

    @defer.inlineCallbacks
    def scan(self):
        """Apply every settled file of the folder; fires when done and
        never fails (a TimerService would stop calling it)."""
        try:
            names = yield self.workers.deferToWorker(self._settledFiles)
        except OSError as e:
            self.log.error("HL7 drop folder {path}: cannot list it: {error}", path=self.path, error=e)
            return
        for name in names:
            try:
                yield self.applyFile(name)
            except Exception:
                self.log.failure("HL7 drop folder: {name} could not be processed", name=name)

    def _settledFiles(self):
        settled = []
        try:
            entries = list(os.scandir(self.path))
        except FileNotFoundError:
            return settled
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_file():
                continue
            modified = entry.stat().st_mtime_ns
            if self.now() - modified / 1e9 >= SETTLE_SECONDS:
                settled.append((modified, entry.name))
        return [name for _, name in sorted(settled)]

    @defer.inlineCallbacks
    def applyFile(self, name):
        """Apply one file of the folder and move it; fires with the list
        of ``Outcome``s of its messages."""
        path = os.path.join(self.path, name)
        try:
            messages = yield self.workers.deferToWorker(_readMessages, path)
        except OSError as e:
            if e.errno != errno.EFBIG:
                self.log.error("HL7 drop folder: cannot read {path}: {error}", path=path, error=e)
                return []
            messages, tooLarge = [], e.strerror
        else:
            tooLarge = None
        outcomes = yield applyMessages(self.intake, messages)
        failed = [o for o in outcomes if o.code != "AA"]
        if tooLarge:
            target, why = FAILED, tooLarge
        elif not outcomes:
            target, why = FAILED, "no HL7 message (no MSH segment) in the file"
        elif failed:
            target = FAILED
            why = "; ".join(f"message {outcomes.index(o) + 1}: {o.code} {o.text}" for o in failed)
        else:
            target, why = PROCESSED, f"{len(outcomes)} message(s) applied"
        moved = yield self.workers.deferToWorker(_moveInto, path, os.path.join(self.path, target))
        log = self.log.info if target == PROCESSED else self.log.warn
        log("HL7 drop folder: {name} -> {moved}: {why}", name=name, moved=moved, why=why)
        return outcomes


@defer.inlineCallbacks
def applyMessages(intake, messages):
    """Apply raw messages in order; fires with their Outcomes."""
    outcomes = []
    for raw in messages:
        outcome = yield intake.process(raw)
        outcomes.append(outcome)
    return outcomes


def readMessages(file):
    """In the I/O pool: the raw messages of an open HL7 file; OSError
    EFBIG when it holds over ``HL7_FILE_LIMIT`` bytes."""
    data = file.read(HL7_FILE_LIMIT + 1)
    if len(data) > HL7_FILE_LIMIT:
        raise OSError(errno.EFBIG, f"larger than {HL7_FILE_LIMIT >> 20} MB")
    return splitMessages(data)


def _readMessages(path):
    with open(path, "rb") as f:
        return readMessages(f)


def _moveInto(path, folder):
    """Move ``path`` into ``folder`` without overwriting; the new path."""
    base = os.path.basename(path)
    target = os.path.join(folder, base)
    number = 1
    while os.path.exists(target):
        target = os.path.join(folder, f"{base}.{number}")
        number += 1
    os.replace(path, target)
    return target
