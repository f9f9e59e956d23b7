"""One pacs at a time in a working folder: ``twistd pacs`` and the offline
``dgate -i``/``-r`` hold an exclusive ``flock`` on ``pacs.lock`` in it,
taken before anything there is touched (a second server would empty the
first one's ``.pacs-tmp``, wipe its crash marks, race it on the drop
folder).  The file holds the pid of its holder; the kernel releases the
lock when that process ends, however it ends."""

import fcntl
import os

from twisted.application import service

LOCK_NAME = "pacs.lock"


class LockError(Exception):
    """The lock is held by another process, or its file cannot be made;
    the message says which, for the operator."""


class WorkFolderLock(service.Service):
    """The lock of ``folder``; as a service, writes the pid of the process
    serving (twistd's daemon, not its launcher) into the file once started."""

    def __init__(self, folder):
        self.folder = folder
        self.path = os.path.join(folder, LOCK_NAME)
        self._fd = None

    def acquire(self):
        """Take the lock; ``LockError`` when another process holds it
        (naming the folder and its pid) or the file cannot be made."""
        if self._fd is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise LockError(f"{e.filename}: {e.strerror}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise LockError(f"the working folder {self.folder} is in use by pacs pid {holder} (which holds "
                            f"{LOCK_NAME} there): stop it first") from None
        self._fd = fd
        self._writePid()

    def release(self):
        """Let the lock go, if it is held."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def startService(self):
        service.Service.startService(self)
        self._writePid()

    def _writePid(self):
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode("ascii"), 0)
