"""Reading only regular files: opening a FIFO waits for a writer (for
ever, if none comes), a device node may never end or act on being opened,
a socket cannot be read at all.  Also the rule of which names are hidden,
and ``SkippedFiles``, the files never to open (the index database's)."""

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


class SkippedFiles:
    """Real paths never to open (the index database's files); ``path in``
    it costs a real path only for a file named like one of them or a
    symbolic link (a hard link under another name is not recognised)."""

    def __init__(self, paths=()):
        self.paths = frozenset(paths)
        self.names = {os.path.basename(path) for path in self.paths}

    def __contains__(self, path):
        return (bool(self.paths) and (os.path.basename(path) in self.names or os.path.islink(path))
                and os.path.realpath(path) in self.paths)
