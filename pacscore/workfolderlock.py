"""One pacs at a time in a working folder: ``twistd pacs`` and the offline
``dgate -i``/``-r`` hold an exclusive ``flock`` on ``pacs.lock`` in it,
taken before anything there is touched (a second server would empty the
first one's ``.pacs-tmp``, wipe its crash marks, race it on the drop
folder).  The file holds the pid of its holder; the kernel releases the
lock when that process ends, however it ends.  A working folder pacs may
not write (read-only, its data, index and logs elsewhere) has the lock in
the folder of MAG0, which pacs writes anyway; server and ``dgate`` choose
alike, so they find the same lock."""

import errno
import fcntl
import os

from twisted.application import service

LOCK_NAME = "pacs.lock"


class LockError(Exception):
    """The lock is held by another process, or its file cannot be made;
    the message says which, for the operator."""


UNWRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


class WorkFolderLock(service.Service):
    """The lock of ``folder``, in it, or in ``elsewhere`` when it may not
    be written; as a service, writes the pid of the process serving
    (twistd's daemon, not its launcher) into the file once started."""

    def __init__(self, folder, elsewhere=None):
        self.folder = folder
        self.elsewhere = elsewhere
        self.path = os.path.join(folder, LOCK_NAME)
        self._fd = None

    @classmethod
    def of(cls, configuration):
        """The lock of ``configuration``'s working folder, else in its MAG0's folder."""
        return cls(configuration.workdir, configuration.magDevices[0][1])

    def acquire(self):
        """Take the lock; ``LockError`` when another process holds it
        (naming the folder and its pid) or the file cannot be made."""
        if self._fd is not None:
            return
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            where = f"{LOCK_NAME} there" if os.path.dirname(self.path) == self.folder else self.path
            raise LockError(f"the working folder {self.folder} is in use by pacs pid {holder} (which holds "
                            f"{where}): stop it first") from None
        self._fd = fd
        self._writePid()

    def _open(self):
        """The descriptor of the lock file, in the working folder or, when
        pacs may not write there, ``elsewhere`` (``self.path`` says which)."""
        self.path = os.path.join(self.folder, LOCK_NAME)
        try:
            return openLockFile(self.path)
        except OSError as e:
            if e.errno not in UNWRITABLE or self.elsewhere is None:
                raise LockError(f"{e.filename}: {e.strerror}") from e
            unwritable = e
        self.path = os.path.join(self.elsewhere, LOCK_NAME)
        try:
            return openLockFile(self.path)
        except OSError as e:
            raise LockError(f"{unwritable.filename}: {unwritable.strerror}, nor {e.filename}: {e.strerror} (the "
                            "lock goes in the folder of MAG0 when pacs may not write the working folder)") from e

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


def openLockFile(path):
    """A descriptor of ``path`` for reading and writing, made if need be."""
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
