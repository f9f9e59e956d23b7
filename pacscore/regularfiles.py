"""Opening a file the server writes because someone named it (the
``log_on:`` file, TroubleLog, UserLog, a control command's output file)
only when it is a regular file.

A FIFO named there would hold the thread that writes to it: its ``open``
waits for a reader, its writes for the reader to read, and that thread
is the reactor's (the log) or one of the I/O pool's that the stores wait
on.  ``openRegularFile`` opens without waiting (``O_NONBLOCK``: a FIFO no
one reads fails at once), checks the file it got, and refuses anything
but a regular file (FIFO, socket, device) with ``NotARegularFile``.
"""

import errno
import os
import stat


class NotARegularFile(OSError):
    """``path`` is not a regular file; ``strerror`` says so and why that is refused."""

    def __init__(self, path):
        super().__init__(errno.EINVAL, "not a regular file (a pipe, socket or device, which could hold "
                                       "the server up): give a file", path)


def openRegularFile(path, mode, **options):
    """``path`` opened as ``open(path, mode, **options)`` opens it for
    writing (``mode`` ``"w"`` or ``"a"``, text or binary); NotARegularFile
    when it is not a regular file, any other OSError as ``open`` raises it."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC | (os.O_APPEND if "a" in mode else 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as e:
        if e.errno == errno.ENXIO:  # a FIFO without a reader
            raise NotARegularFile(path) from e
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotARegularFile(path)
        os.set_blocking(fd, True)
        if "w" in mode:  # truncated once known to be a regular file
            os.ftruncate(fd, 0)
        return open(fd, mode, **options)
    except BaseException:
        os.close(fd)
        raise
