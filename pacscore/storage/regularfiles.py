"""Reading only regular files: opening a FIFO waits for a writer (for
ever, if none comes), a device node may never end or act on being opened,
a socket cannot be read at all.  Also the rule of which names are hidden."""

import errno
import os
import stat


def hidden(name):
    """Whether the file or folder ``name`` is hidden (a device's
    ``.pacs-tmp``, a system's ``.Trash``), which regen and the folder import
    skip."""
    return name.startswith(".")


def isRegularFile(path):
    """Whether ``path`` is a regular file, or a link that leads to one;
    OSError when it is not there (a dangling link)."""
    return stat.S_ISREG(os.stat(path).st_mode)


def openRegularFile(path):
    """``path`` opened for binary reading; OSError unless it is a regular
    file. Opening does not wait for a FIFO's writer (``O_NONBLOCK``)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file")
    return os.fdopen(fd, "rb")
