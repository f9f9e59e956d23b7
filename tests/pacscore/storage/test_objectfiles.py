"""Writing object files: ``FileWrites`` (O_DIRECT for large files, the
page cache for the rest and wherever the file system refuses) and
``writeAll``.  Real files in the test's temporary folder."""

import errno
import fcntl
import os

from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial import unittest

from pacscore.storage import objectfiles
from pacscore.storage.objectfiles import ALIGNMENT, BUFFER_SIZE, FileWrites, writeAll


def isDirect(fd):
    return bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT)


class FileWritesTests(unittest.TestCase):

    def setUp(self):
        self.folder = os.path.abspath(self.mktemp())
        os.makedirs(self.folder)
        self.messages = []
        globalLogPublisher.addObserver(self.messages.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.messages.append)

    def writeFile(self, writes, pieces, name="object", create=True):
        """Write ``pieces`` (lists of buffers, one ``write`` each) into a new
        file; returns its bytes and whether it was opened for O_DIRECT."""
        path = os.path.join(self.folder, name)
        size = sum(len(b) for piece in pieces for b in piece)
        if not create:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644))
        out = writes.open(path, size, create=create)
        try:
            direct = isDirect(out.fd)
            for buffers in pieces:
                out.write(buffers)
            out.finish()
        finally:
            out.close()
        with open(path, "rb") as f:
            return f.read(), direct

    def test_largeFilesDirectWithEverySize(self):
        """Sizes around the block and buffer boundaries, in uneven pieces:
        the file holds exactly what was written."""
        writes = FileWrites(directSize=1)
        for size in (1, ALIGNMENT - 1, ALIGNMENT, ALIGNMENT + 1, BUFFER_SIZE - 1, BUFFER_SIZE,
                     BUFFER_SIZE + 1, 3 * BUFFER_SIZE + 4097):
            data = os.urandom(size)
            cut = size // 3
            pieces = [[b"DICM-header", memoryview(data)[:cut]], [bytearray(data[cut:])]]
            written, direct = self.writeFile(writes, pieces, name=f"object{size}")
            self.assertTrue(direct, size)
            self.assertEqual(written, b"DICM-header" + data, size)

    def test_existingEmptyFile(self):
        """The store's files come from the reservoir: opened, not created."""
        data = os.urandom(300000)
        written, direct = self.writeFile(FileWrites(directSize=128 << 10), [[data]], create=False)
        self.assertTrue(direct)
        self.assertEqual(written, data)

    def test_smallFilesThroughThePageCache(self):
        writes = FileWrites(directSize=128 << 10)
        written, direct = self.writeFile(writes, [[b"x" * 1000]])
        self.assertFalse(direct)
        self.assertEqual(written, b"x" * 1000)

    def test_zeroMeansNever(self):
        written, direct = self.writeFile(FileWrites(directSize=0), [[b"y" * BUFFER_SIZE * 2]])
        self.assertFalse(direct)
        self.assertEqual(len(written), BUFFER_SIZE * 2)

    def test_unknownSizeIsLarge(self):
        """A spooled data set: its size is not known when the file is created."""
        out = FileWrites(directSize=128 << 10).open(os.path.join(self.folder, "spool"), create=True)
        self.addCleanup(out.close)
        self.assertTrue(isDirect(out.fd))

    def test_buffersReused(self):
        writes = FileWrites(directSize=1)
        self.writeFile(writes, [[b"a" * 5000]], name="first")
        [buffer] = writes._buffers
        out = writes.open(os.path.join(self.folder, "second"), 5000, create=True)
        self.assertEqual(writes._buffers, [], "the free buffer is taken again")
        out.close()
        self.assertEqual(writes._buffers, [buffer])

    def test_freeBuffersBounded(self):
        """After a burst of large objects written at once, only ``freeBuffers`` stay mapped."""
        writes = FileWrites(directSize=1)
        files = [writes.open(os.path.join(self.folder, f"burst{n}"), 5000, create=True)
                 for n in range(writes.freeBuffers + 3)]
        buffers = [out._buffer for out in files]
        for out in files:
            out.close()
        self.assertEqual(len(writes._buffers), writes.freeBuffers)
        self.assertEqual([b.closed for b in buffers], [False] * writes.freeBuffers + [True] * 3)

    def test_fileSystemRefusesAtOpen(self):
        """EINVAL when O_DIRECT is set (tmpfs before Linux 6.6, some FUSE
        file systems): the page cache takes this file and every later one
        on that file system, with one log line."""
        realFcntl = fcntl.fcntl
        attempts = []

        def refusingFcntl(fd, command, *args):
            if command == fcntl.F_SETFL and args[0] & os.O_DIRECT:
                attempts.append(fd)
                raise OSError(errno.EINVAL, "Invalid argument")
            return realFcntl(fd, command, *args)

        self.patch(objectfiles.fcntl, "fcntl", refusingFcntl)
        writes = FileWrites(directSize=1)
        data = os.urandom(BUFFER_SIZE + 10)
        for name in ("first", "second"):
            written, direct = self.writeFile(writes, [[data]], name=name)
            self.assertFalse(direct)
            self.assertEqual(written, data)
        self.assertEqual(len(attempts), 1, "not tried again on the same file system")
        refusals = [m for m in self.messages if "refuses O_DIRECT" in m.get("log_format", "")]
        self.assertEqual(len(refusals), 1)
        self.assertEqual(refusals[0]["log_level"], LogLevel.info)
        self.assertEqual(refusals[0]["path"], os.path.join(self.folder, "first"))

    def test_fileSystemRefusesAWrite(self):
        """EINVAL from a direct write: what was gathered goes through the
        page cache, and so does the rest of the file."""
        realWrite = os.write

        def refusingWrite(fd, data):
            if isDirect(fd):
                raise OSError(errno.EINVAL, "Invalid argument")
            return realWrite(fd, data)

        self.patch(objectfiles.os, "write", refusingWrite)
        data = os.urandom(3 * BUFFER_SIZE + 5)
        writes = FileWrites(directSize=1)
        written, direct = self.writeFile(writes, [[data[:BUFFER_SIZE + 7]], [data[BUFFER_SIZE + 7:]]])
        self.assertTrue(direct)
        self.assertEqual(written, data)
        written, direct = self.writeFile(writes, [[data]], name="later")
        self.assertFalse(direct, "the file system is remembered")
        self.assertEqual(written, data)

    def test_shortDirectWrite(self):
        """A direct write that takes less than asked: the page cache takes the rest."""
        realWrite = os.write
        calls = []

        def shortWrite(fd, data):
            calls.append(isDirect(fd))
            return realWrite(fd, data[:ALIGNMENT] if isDirect(fd) else data)

        self.patch(objectfiles.os, "write", shortWrite)
        data = os.urandom(2 * BUFFER_SIZE + 100)
        written, _ = self.writeFile(FileWrites(directSize=1), [[data]])
        self.assertEqual(written, data)
        self.assertEqual(calls, [True])

    def test_errorsOtherThanRefusalRaise(self):
        def full(fd, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        self.patch(objectfiles.os, "write", full)
        out = FileWrites(directSize=1).open(os.path.join(self.folder, "full"), BUFFER_SIZE * 2, create=True)
        self.addCleanup(out.close)
        error = self.assertRaises(OSError, out.write, [b"z" * BUFFER_SIZE])
        self.assertEqual(error.errno, errno.ENOSPC)


class WriteAllTests(unittest.TestCase):
    """``writeAll``: one writev for header and data, short writes resumed."""

    def write(self, buffers, limit):
        path = self.mktemp()
        calls = []
        realWritev = os.writev

        def shortWritev(fd, views):
            calls.append([len(view) for view in views])
            head, left = [], limit
            for view in views:
                head.append(view[:left])
                left -= len(head[-1])
            return realWritev(fd, head)

        self.patch(os, "writev", shortWritev)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT)
        try:
            writeAll(fd, buffers)
        finally:
            os.close(fd)
        with open(path, "rb") as f:
            return f.read(), calls

    def test_oneCallWhenTheKernelTakesAll(self):
        data, calls = self.write([b"header", bytearray(b"data set"), b""], 1 << 20)
        self.assertEqual(data, b"headerdata set")
        self.assertEqual(calls, [[6, 8]])

    def test_shortWritesResumed(self):
        data, calls = self.write([b"header", memoryview(b"data set")], 4)
        self.assertEqual(data, b"headerdata set")
        self.assertEqual(calls, [[6, 8], [2, 8], [6], [2]])

    def test_nothingAcceptedIsAnError(self):
        self.assertRaises(OSError, self.write, [b"x"], 0)
